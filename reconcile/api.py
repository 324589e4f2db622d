"""The library entry point: reconcile manifests and write the report.

    summary = await reconcile.run(["export.csv"], Settings.load(), RunOptions(out_dir=Path("out")))

The CLI is a thin layer over this function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from reconcile.config import Settings
from reconcile.engine import Journal, Reconciler, RunOptions, claim
from reconcile.input import ManifestInfo, options_record, spool_streams
from reconcile.report import Report, RunReport, check_options, supersede

from .errors import ManifestError, UsageError


async def run(
    paths: Sequence[str | Path],
    settings: Settings,
    options: RunOptions,
    *,
    on_start: Callable[[Reconciler], None] | None = None,
) -> Report:
    """Check every row of ``paths`` and write the report into ``options.out_dir``.

    ``on_start`` receives the :class:`Reconciler` before any request is sent: the CLI uses it to install
    signal handlers (``reconciler.stop``) and to watch ``reconciler.progress``.  ``--out`` is claimed first
    (:func:`reconcile.engine._outdir.claim`): nothing in it is read, cleared or opened before this run holds its lock.
    """
    with claim(options.out_dir, command="run", force=options.force):
        return await _run_claimed(paths, settings, options, on_start)


async def _run_claimed(
    paths: Sequence[str | Path],
    settings: Settings,
    options: RunOptions,
    on_start: Callable[[Reconciler], None] | None,
) -> Report:
    paths = spool_streams([Path(p) for p in paths], options.out_dir)  # stdin and pipes: read once, kept in --out
    reconciler = Reconciler(paths, settings, options)
    check_options(options.formats, options.compare_to)  # a bad --format or --compare-to fails before any request
    if options.retry_errors and not Journal.exists(options.out_dir):
        raise UsageError(
            f"--retry-errors: {options.out_dir} holds no earlier run to retry. HINT: give the --out of a finished run"
        )
    infos = [m.info() for m in reconciler.manifests]
    if options.fresh:
        supersede(options.out_dir)  # the journal it describes is about to go
    journal = Journal.open(
        options.out_dir,
        infos,
        fresh=options.fresh,
        shard=str(options.shard) if options.shard else "",
        reading=options_record(options.read),
    )
    report = RunReport(
        reconciler.manifests,
        journal,
        settings,
        run_id=journal.run_id,
        label=options.label,
        out_dir=options.out_dir,
        formats=options.formats,
        compare_to=options.compare_to,
        shard=options.shard,
    )
    try:
        # This attempt is about to change the journal: a finished report beside it would no longer describe it.
        supersede(options.out_dir)
        if on_start is not None:
            on_start(reconciler)
        async with report.following(reconciler.watermark):
            outcome = await reconciler.run(journal)
        _check_unchanged(infos, outcome.infos)
        return await report.finish(outcome)
    except BaseException:
        report.abort()
        raise
    finally:
        journal.close()


def _check_unchanged(before: Sequence[ManifestInfo], after: Sequence[ManifestInfo]) -> None:
    """Refuse to report on a manifest that changed during the run (an export still being written, say): the
    rows sent and the rows the report would read back could differ, so no report could be trusted."""
    for start, end in zip(before, after, strict=True):
        if start.sha256 != end.sha256:
            raise ManifestError(
                start.path,
                f"changed while it was being reconciled (SHA-256 {start.sha256[:12]}… at the start, "
                f"{end.sha256[:12]}… at the end), so no report was written: the rows checked and the rows a "
                "report would show could differ. HINT: reconcile an export once it is complete, then run again "
                "with --fresh",
            )
