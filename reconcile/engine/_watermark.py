"""The commit watermark: how far, in manifest order, every row's result is committed to the journal.

Rows are answered out of order but reported in manifest order; the report follows the watermark while the run
goes, so that at the end only the last rows are left to write (docs/design.md, "The commit watermark").
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

Position = tuple[int, int]  # (source, row): manifest index and 1-based row, compared in that order
START: Position = (0, 0)
END: Position = (1 << 62, 0)  # past every row: the run is over and the journal holds all it ever will
LIMIT = 50_000  # rows outstanding at most (a few MB), e.g. 12 s of 4,000 rows/s behind one stuck row

log = logging.getLogger("reconcile.engine._watermark")


class CommitWatermark:
    """Rows handed out in feed order, which of them are recorded, and the committed bound.

    ``committed`` is exclusive: every row before it has its result in the journal (from this attempt or an
    earlier one), or is not this run's to check (another shard's).  It only moves forward.

    Past ``limit`` rows outstanding behind one stuck row, it stops tracking (memory stays bounded): it stays
    where it was, and the report is finished after the run, as if nothing had been written during it.
    """

    def __init__(self, limit: int = LIMIT) -> None:
        self.committed: Position = START
        self.moved = asyncio.Event()  # set whenever ``committed`` advances
        self.tracking = True
        self._limit = limit
        self._order: deque[Position] = deque()  # rows handed out and not yet known recorded, in feed order
        self._recorded: set[Position] = set()  # rows recorded that are not at the head of _order yet
        self._fed: Position = START  # every row before it has been handed out or needed nothing

    @property
    def outstanding(self) -> int:
        """Rows handed out that the watermark still waits for."""
        return len(self._order)

    def handed_out(self, position: Position) -> None:
        """A row will be recorded: settled at once (invalid, duplicate) or sent to a worker."""
        if self.tracking:
            self._order.append(position)
            if len(self._order) > self._limit:
                self._stop_tracking()

    def recorded(self, position: Position) -> None:
        """A row's result was given to the journal (not yet committed)."""
        if self.tracking:
            self._recorded.add(position)

    def fed_until(self, position: Position) -> None:
        """Every row before ``position`` has been handed out, was resolved earlier, or is another shard's."""
        self._fed = position

    def recorded_until(self) -> Position:
        """The bound that the journal's next commit makes true; take it *before* the flush that commits."""
        if not self.tracking:
            return self.committed
        order, recorded = self._order, self._recorded
        while order and order[0] in recorded:
            recorded.discard(order.popleft())
        return order[0] if order else self._fed

    def commit(self, position: Position) -> None:
        """The journal committed everything recorded before :meth:`recorded_until` returned ``position``."""
        if position > self.committed:
            self.committed = position
            self.moved.set()

    def _stop_tracking(self) -> None:
        head, count = self._order[0], len(self._order)
        log.debug("row %s is outstanding behind %d others: the report is finished after the run", head, count)
        self.tracking = False
        self._order.clear()
        self._recorded.clear()
