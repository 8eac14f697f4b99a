"""Progress lines of long loops (training anchors, boosting rounds, evaluation slots).

A step that runs for minutes must say where it is: ``Progress`` turns a loop's counts into a log
line whenever ``every`` seconds have passed since the last one, so the gaps stay near ``every``
plus one unit of work whatever the data's size, and a short loop stays quiet.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Log = Callable[[str], None]


class Progress:
    """``step(done)`` logs ``<label>: <done>[/<total>] [<unit>] [<detail>] (<elapsed> s)``
    when at least ``every`` seconds passed since the previous line (``every=0``: every step)."""

    def __init__(
        self,
        log: Log | None,
        label: str,
        total: int | None = None,
        unit: str = "",
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._label = label
        self._total = total
        self._unit = unit
        self._every = every
        self._clock = clock
        self._began = clock()
        self._last = self._began
        self.lines = 0

    @property
    def elapsed(self) -> float:
        return self._clock() - self._began

    def step(self, done: int, detail: str = "") -> None:
        now = self._clock()
        if self._log is None or now - self._last < self._every:
            return
        self._last = now
        count = f"{done:,}" if self._total is None else f"{done:,}/{self._total:,}"
        self.say(" ".join(part for part in (count, self._unit, detail) if part))

    def say(self, message: str) -> None:
        """A line now, whatever the time since the last one."""
        if self._log is None:
            return
        self._last = self._clock()
        self.lines += 1
        self._log(f"{self._label}: {message} ({self.elapsed:.1f} s)")
