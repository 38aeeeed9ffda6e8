"""A CPU-time budget for one block of work, so one hostile message cannot stall the queue.

SIGPROF with ITIMER_PROF counts CPU time, not wall time, and leaves SIGALRM to RQ's job timeouts.
Signals reach only the main thread: elsewhere the block runs without a budget.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# After the first signal the timer keeps firing this often, so a budget swallowed by some
# `except Exception` inside the block is raised again instead of lost.
_REPEAT = 0.05


class BudgetExceeded(Exception):
    """The block used more CPU time than its budget."""


@contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Raise BudgetExceeded inside the block once it has used `seconds` of CPU time."""
    if not _signals_available():
        yield
        return
    armed = [True]

    def exceeded(signum: int, frame: object) -> None:
        if armed[0]:  # a signal still pending after the block ended is ignored
            raise BudgetExceeded(f"used more than {seconds:g}s of CPU time")

    previous = signal.signal(signal.SIGPROF, exceeded)
    outer = signal.setitimer(signal.ITIMER_PROF, seconds, _REPEAT)
    started = time.process_time()
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
        _restore(outer, time.process_time() - started)


def _signals_available() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _restore(outer: tuple[float, float], used: float) -> None:
    """Give an enclosing budget back what it had left; if it ran out meanwhile, it fires at once."""
    delay, interval = outer
    if delay:
        signal.setitimer(signal.ITIMER_PROF, max(delay - used, 1e-6), interval)
