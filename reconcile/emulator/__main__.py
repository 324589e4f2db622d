"""`python -m reconcile.emulator`: the emulator without the full CLI."""

from __future__ import annotations

from reconcile.emulator.command import emulator

emulator(prog_name="python -m reconcile.emulator")
