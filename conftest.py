"""Fixtures shared by the tests of every package (pytest runs from the workspace root)."""

from __future__ import annotations

import threading

import pytest


def _spin_until(executor, stop: threading.Event) -> None:
    from rclpy.exceptions import InvalidHandle

    while not stop.is_set() and executor.context.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except InvalidHandle:  # an entity destroyed by the test thread while rclpy built its wait set
            continue  # the next wait set is built without it


@pytest.fixture
def spin_in_background():
    """``start(*executors)`` spins each executor on a thread and returns ``halt()``, which ends those
    threads; call it before ``executor.shutdown()``. rclpy's own ``spin()`` can still hand work to a
    thread pool that another thread shut down ("cannot schedule new futures after shutdown") and dies
    when a test destroys an entity while it builds a wait set; this loop does neither. Threads still
    running at the end of the test are halted here."""
    halts = []

    def start(*executors):
        stop = threading.Event()
        threads = [threading.Thread(target=_spin_until, args=(e, stop), daemon=True) for e in executors]
        for thread in threads:
            thread.start()

        def halt() -> None:
            stop.set()
            for thread in threads:
                thread.join(timeout=5)

        halts.append(halt)
        return halt

    yield start
    for halt in halts:
        halt()
