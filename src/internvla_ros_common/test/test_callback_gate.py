"""CallbackGate without ROS: skips new calls when closed, waits for the ones in flight."""

from __future__ import annotations

import threading
import time

from internvla_ros_common.callback_gate import CallbackGate


def test_a_closed_gate_skips_skippable_callbacks_and_still_runs_services():
    gate = CallbackGate()
    calls: list[str] = []
    topic = gate.wrap(lambda msg: calls.append(msg) or "done")
    service = gate.wrap(lambda req: calls.append(req) or "answer", skip_when_closed=False)
    assert topic("a") is None and calls == []  # closed until activate opens it
    gate.open()
    assert topic("b") == "done"
    gate.close()
    assert topic("c") is None and service("d") == "answer"
    assert calls == ["b", "d"]


def test_wait_idle_waits_for_a_callback_running_on_another_thread():
    gate = CallbackGate()
    gate.open()
    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    worker = threading.Thread(target=gate.wrap(slow))
    worker.start()
    assert started.wait(5.0)
    gate.close()
    assert gate.in_flight == 1
    assert gate.wait_idle(timeout=5.0) and finished.is_set() and gate.in_flight == 0
    worker.join()


def test_wait_idle_inside_a_callback_does_not_wait_for_itself():
    gate = CallbackGate()
    gate.open()
    answers: list[bool] = []
    gate.wrap(lambda: answers.append(gate.wait_idle(timeout=0.5)))()
    assert answers == [True]


def test_wait_idle_gives_up_after_the_timeout():
    gate = CallbackGate()
    gate.open()
    release = threading.Event()
    worker = threading.Thread(target=gate.wrap(lambda: release.wait(5.0)))
    worker.start()
    time.sleep(0.05)
    assert gate.wait_idle(timeout=0.1) is False
    release.set()
    worker.join()
