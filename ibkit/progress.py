"""Progress of long work, one idiom for training, sweeps and estimators: a tqdm bar on a terminal, a log line at
least every ``INTERVAL`` seconds, and (for estimators) the up-front refusal of work that a short pilot says would
take more than ``LONG_WORK`` seconds.

The lines go to the logger "ibkit.progress" at INFO. Importing ibkit adds no handler (STYLE rule 13), so in Python
nothing is logged unless the user configures logging (``logging.basicConfig(level=logging.INFO)``); the bar shows
when stderr is a terminal. The command line adds its own handler for its runs (``log_to_stderr``).

    with Progress("iwae", total=k * n, unit="decoder passes", refusal=Refusal("iwae with k=... on n rows",
                  "use a smaller k or fewer rows")) as progress:
        for chunk in ...:
            ...
            progress.update(pairs_in_chunk)  # the first updates are the pilot that may refuse the work
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tqdm.auto import tqdm

LOG = logging.getLogger("ibkit.progress")
INTERVAL = 30.0  # seconds: a piece of work logs a line at least this often while it runs (none if it ends sooner)
BAR_DELAY = 2.0  # seconds before a terminal bar appears, so that short work draws none
LONG_WORK = 3600.0  # seconds: work whose pilot estimate exceeds this is refused, unless allowed (allow_long=True)
PILOT_UPDATES = 2  # updates the estimate rests on: the first pays for warm-up, so the faster of the two counts
LOG_FORMAT = "%(asctime)s ibkit: %(message)s"  # the command line's progress lines
_ACTIVE: list[Progress] = []  # the logging Progress objects now open, innermost last: only it logs heartbeats


@dataclass(frozen=True)
class Refusal:
    """What a refusal says: ``work`` ("iwae with k=1000000000 on 359 rows") and ``remedy`` ("use a smaller k or
    fewer rows"); ``at_most``: the total is an upper bound (work that may stop early), said as "needs up to"."""

    work: str
    remedy: str
    at_most: bool = False


class Progress:
    """The progress of ``total`` units of work (``unit``, plural: "decoder passes", "epochs", "runs") named ``desc``.

    ``update(n)`` after each piece: it moves the bar (on a terminal only, after ``BAR_DELAY`` s) and logs a line
    once ``INTERVAL`` s have passed since the last; a background thread logs the same line when no update comes
    for ``INTERVAL`` s (a single long chunk or epoch), so a run that logs at all logs at least that often (while
    work is nested, a sweep's evaluation around an ``iwae``, the innermost one's thread speaks for all):

        iwae: 3.6e6 of 3.6e11 decoder passes (0.0%), 30 s elapsed, about 35 days left

    With ``refusal``, the first ``PILOT_UPDATES`` updates are a pilot: the rate r (units per second) of the faster
    of them, timed after ``sync()`` (``torch.cuda.synchronize`` on a GPU, whose calls return before the work is
    done), gives the estimate total / r; above ``LONG_WORK`` seconds the work is refused there, with a ValueError
    naming the total, the estimate, the measured rate and the remedy. ``show=False`` is silent: no bar, no lines.
    Use it as a context manager (the bar and the thread end with the block, an exception included).
    """

    def __init__(self, desc: str, total: float, unit: str, *, show: bool = True, refusal: Refusal | None = None,
                 sync: Callable[[], None] | None = None):
        self.desc, self.total, self.unit = desc, total, unit
        self.done: float = 0
        self.refusal, self.sync = refusal, sync or (lambda: None)
        self.postfix: dict[str, object] = {}
        self.limit, self.interval = LONG_WORK, INTERVAL  # read now, so that a test may patch the module's values
        self._pilot, self._best_rate = (PILOT_UPDATES if refusal is not None else 0), 0.0
        self._start = self._last_update = self._last_line = time.perf_counter()
        self._logging = show and LOG.isEnabledFor(logging.INFO)
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._bar = tqdm(total=total, desc=desc, unit=" " + unit.split()[-1], unit_scale=total >= 1e4, leave=False,
                         delay=BAR_DELAY, disable=not (show and sys.stderr.isatty()))
        self._thread = None
        self._logged: float | None = None  # the units done at the last line logged (None: no line yet)
        if self._logging:
            _ACTIVE.append(self)
            self._thread = threading.Thread(target=self._beat, name=f"ibkit progress: {desc}", daemon=True)
            self._thread.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """``n`` more units done (the pilot's updates may raise the refusal)."""
        if self._pilot:
            self.sync()
        now = time.perf_counter()
        self.done += n
        if self._pilot:
            self._check_estimate(n, now)
        self._last_update = now
        self._bar.update(n)
        if self._logging and now - self._last_line >= self.interval:
            self._line()

    def set_postfix(self, **values) -> None:
        """Values shown after the bar and at the end of each line (e.g. the last epoch's loss)."""
        self.postfix = values
        self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """End the bar and the thread; work that logged a line logs its last state too (where it ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            with contextlib.suppress(ValueError):
                _ACTIVE.remove(self)
            if self._logged is not None and self._logged != self.done:
                self._line(force=True)
        self._bar.close()

    def _check_estimate(self, n: float, now: float) -> None:
        """The pilot: refuse work whose estimate at the fastest rate measured so far exceeds ``LONG_WORK`` s."""
        self._pilot -= 1
        seconds = now - self._last_update
        self._best_rate = max(self._best_rate, n / seconds if seconds > 0 else math.inf)
        estimate = self.total / self._best_rate
        r = self.refusal
        if r is None or self.done >= self.total or estimate <= self.limit:
            self._pilot = 0  # short enough (or finished): no more checks
        elif not self._pilot:
            raise ValueError(f"{r.work} needs {'up to ' if r.at_most else ''}{number(self.total)} {self.unit}, about "
                             f"{duration(estimate)} at the measured {number(self._best_rate)} "
                             f"{self.unit.split()[-1]}/s on this machine; {r.remedy}, or pass allow_long=True "
                             "(ibkit analyse: --allow-long)")

    def _beat(self) -> None:
        """The background thread: a line whenever ``INTERVAL`` s pass without one."""
        while not self._stop.wait(max(0.01, self.interval - (time.perf_counter() - self._last_line))):
            if _ACTIVE and _ACTIVE[-1] is self:
                self._line()

    def _line(self, force: bool = False) -> None:
        """Log the line, unless one was logged less than ``INTERVAL`` s ago (by the other thread)."""
        with self._lock:
            now = time.perf_counter()
            if now - self._last_line < self.interval and not force:
                return
            self._last_line, self._logged = now, self.done
            elapsed = now - self._start
            share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
            left = ""
            if 0 < self.done < self.total:
                left = f", about {duration((self.total - self.done) * elapsed / self.done)} left"
            extra = "; " + ", ".join(f"{k} {v}" for k, v in self.postfix.items()) if self.postfix else ""
            LOG.info("%s", f"{self.desc}: {number(self.done)} of {number(self.total)} {self.unit}{share}, "
                           f"{duration(elapsed)} elapsed{left}{extra}")


def number(x: float) -> str:
    """A count as a line shows it: whole below 10,000 (359), else two digits (3.6e11)."""
    if x < 1e4:
        return f"{x:.0f}" if float(x).is_integer() or x >= 10 else f"{x:.2g}"
    return re.sub(r"e\+?0*(\d)", r"e\1", f"{x:.2g}")


def duration(seconds: float) -> str:
    """A time span as a line shows it: 12 s, 3.5 minutes, 2.1 hours, 2.3 days, 41 days."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} minutes"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} hours"
    days = seconds / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"


def stderr_handler() -> logging.Handler:
    """A handler writing ibkit's lines on stderr, time first (``LOG_FORMAT``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    return handler


def stderr_level() -> int | None:
    """The level ``log_to_stderr`` set, while it holds (so that worker processes log as the command line does);
    None otherwise."""
    logger = logging.getLogger("ibkit")
    return logger.level if any(getattr(h, "ibkit_stderr", False) for h in logger.handlers) else None


@contextlib.contextmanager
def log_to_stderr(level: int = logging.INFO) -> Iterator[None]:
    """For the block, ibkit's log lines (the logger "ibkit" and its children) at ``level`` and above on stderr:
    what the command line sets for its own runs; afterwards the logger is as it was."""
    logger = logging.getLogger("ibkit")
    handler = stderr_handler()
    handler.ibkit_stderr = True  # type: ignore[attr-defined]  # what stderr_level looks for
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
