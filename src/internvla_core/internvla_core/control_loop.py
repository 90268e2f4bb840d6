"""A fixed-rate control loop on a thread of its own: absolute deadlines, optional SCHED_FIFO priority.

Why not an rclpy timer: the timer's callback waits for an executor thread, which shares the GIL and
the cores with everything else in the process (image conversion, other callbacks, a model's Python
side). Measured on 2 cores (bench/bench_executor.py): |period - 10 ms| p99 3-4 ms even with nothing
else running, 8 ms while the policy infers. ros2_control runs its update loop the same way this module
does: a dedicated thread that sleeps until the next absolute deadline (no drift: a late wake-up does not
shift the later ones) at real-time priority (``controller_manager``'s ``thread_priority``, default 50,
which needs ``CAP_SYS_NICE`` or an ``rtprio`` limit; the compose files in docker/ grant both).

A late step runs at once; deadlines missed by whole periods are not made up with a burst of
back-to-back calls (a controller given three setpoints in a row at once gains nothing): the loop runs
one late step and counts the skipped deadlines as overruns.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def set_thread_realtime(priority: int) -> str:
    """Give the calling thread SCHED_FIFO at ``priority`` (1-99). Returns "" or why it was refused."""
    if not 1 <= priority <= 99:
        return f"priority {priority} is outside SCHED_FIFO's 1-99"
    if not hasattr(os, "sched_setscheduler"):
        return "this platform has no sched_setscheduler (Linux only)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: the calling thread
    except PermissionError:
        return (
            "not permitted: give the process CAP_SYS_NICE (docker: cap_add SYS_NICE) or an rtprio limit "
            "(ulimit -r / limits.conf) of at least the priority"
        )
    except OSError as exc:
        return f"refused: {exc}"
    return ""


class ControlLoop:
    """Calls ``step()`` every ``period`` seconds on its own thread until ``stop()``.

    ``priority`` > 0 asks for SCHED_FIFO on that thread; ``priority_error`` then says whether it was
    granted ("" when it was, or when none was asked). ``clock`` and ``sleep`` are injectable for tests
    (monotonic seconds; the sleep is interrupted by ``stop()`` through an Event when not injected).
    """

    def __init__(
        self,
        period: float,
        step: Callable[[], None],
        priority: int = 0,
        name: str = "control_loop",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if not period > 0:
            raise ValueError(f"period must be > 0, got {period}")
        self.period = period
        self.priority = priority
        self.priority_error = ""
        self.overruns = 0  # deadlines skipped because a step (or the scheduler) ran past them
        self.steps = 0
        self._step, self._clock, self._on_error = step, clock, on_error
        self._stop = threading.Event()
        self._sleep = sleep or (lambda seconds: self._stop.wait(seconds))
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> ControlLoop:
        """Start the thread; returns once the priority request was answered (see ``priority_error``)."""
        self._thread.start()
        self._started.wait()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the step in flight (if any); True when the thread ended within ``timeout``."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _run(self) -> None:
        if self.priority > 0:
            self.priority_error = set_thread_realtime(self.priority)
        self._started.set()
        deadline = self._clock() + self.period
        while not self._stop.is_set():
            remaining = deadline - self._clock()
            if remaining > 0:
                self._sleep(remaining)
                if self._stop.is_set():
                    break
            try:
                self._step()
            except Exception as exc:  # one bad step must not end the loop silently: report, go on
                if self._on_error is None:
                    raise
                self._on_error(exc)
            self.steps += 1
            deadline += self.period
            behind = self._clock() - deadline
            if behind >= self.period:  # whole periods missed: one late step now, not a burst of them
                missed = int(behind // self.period)
                self.overruns += missed
                deadline += missed * self.period
