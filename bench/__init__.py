"""The benchmark: the engine against a bare aiohttp loop and the guide's sequential client.

Run it with ``python -m bench`` (see bench/README.md).  Every client runs in its own process against an
emulator in yet another process, so wall time, CPU time and peak RSS are measured per process.
"""

from __future__ import annotations
