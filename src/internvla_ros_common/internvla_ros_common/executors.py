"""DrainingExecutor: a MultiThreadedExecutor that lets its worker threads finish before it shuts down.

rclpy 9's ``MultiThreadedExecutor.shutdown`` destroys the executor's guard condition and only then
waits for its thread pool. A callback handler still queued in the pool (behind a goal's loop, or a
timer tick handed over just before Ctrl-C) then fails on that guard or on an entity the shutdown
transition destroyed, and at exit Python prints "The following exception was never retrieved:
cannot use Destroyable because destruction was requested". ``drain()`` waits for the pool first.
"""

from __future__ import annotations

from rclpy.executors import MultiThreadedExecutor


class DrainingExecutor(MultiThreadedExecutor):
    def drain(self) -> None:
        """Wait for every callback already handed to the pool; the executor accepts no new work after."""
        self._executor.shutdown(wait=True)  # the thread pool (rclpy keeps no public handle on it)

    def shutdown(self, timeout_sec: float | None = None, *, wait_for_threads: bool = True) -> bool:
        self.drain()
        return super().shutdown(timeout_sec, wait_for_threads=wait_for_threads)
