"""CallbackGate: which callbacks of the active state are still running (no rclpy import).

Destroying a subscription or timer stops new deliveries, but a callback already handed to a
MultiThreadedExecutor's pool keeps running. If cleanup then frees what it uses (the publisher it
publishes on, the model it calls), it fails inside the executor: an exception that kills
``spin()`` or is printed at exit as "The following exception was never retrieved". The lifecycle
base wraps every managed callback with a gate: closed on deactivate, it skips new calls, and the
base waits (bounded) for the ones in flight before the node counts as inactive.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class CallbackGate:
    """Counts wrapped callbacks in flight; when closed, new calls of skippable callbacks return None."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._open = False
        self._in_flight = 0
        self._local = threading.local()  # callbacks running on this thread (a callback may deactivate)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def open(self) -> None:
        with self._condition:
            self._open = True

    def close(self) -> None:
        with self._condition:
            self._open = False

    def wrap(self, callback: Callable[..., Any], skip_when_closed: bool = True) -> Callable[..., Any]:
        """``callback`` counted while it runs; skipped while closed unless ``skip_when_closed`` is False
        (service callbacks must answer)."""

        @functools.wraps(callback)
        def gated(*args: Any, **kwargs: Any) -> Any:
            with self._condition:
                if skip_when_closed and not self._open:
                    return None
                self._in_flight += 1
            depth = getattr(self._local, "depth", 0)
            self._local.depth = depth + 1
            try:
                return callback(*args, **kwargs)
            finally:
                self._local.depth = depth
                with self._condition:
                    self._in_flight -= 1
                    self._condition.notify_all()

        return gated

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no wrapped callback runs on another thread; False after ``timeout`` seconds."""
        own = getattr(self._local, "depth", 0)
        with self._condition:
            return self._condition.wait_for(lambda: self._in_flight <= own, timeout)
