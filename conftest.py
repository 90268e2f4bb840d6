"""Fixtures shared by the tests of every package (pytest runs from the workspace root)."""

from __future__ import annotations

import pytest


@pytest.fixture
def context():
    """A private rclpy context per test (``internvla_ros_common.testing.ros_context``), shut down after it."""
    from internvla_ros_common.testing import ros_context

    with ros_context() as ctx:
        yield ctx


@pytest.fixture
def spin_in_background():
    """``start(*executors)`` spins each executor on its own ``internvla_ros_common.testing.Spinner``
    thread and returns ``halt()``, which stops them (and raises if one died); call it before
    ``executor.shutdown()``. Spinners still running at the end of the test are stopped here."""
    from internvla_ros_common.testing import Spinner

    halts = []

    def start(*executors):
        spinners = [Spinner(executor) for executor in executors]
        stopped = False

        def halt() -> None:
            nonlocal stopped
            if stopped:
                return
            stopped = True
            for spinner in spinners:
                spinner.stop()

        halts.append(halt)
        return halt

    yield start
    for halt in halts:
        halt()
