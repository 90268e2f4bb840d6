"""ControlLoop: absolute deadlines, no burst after an overrun, prompt stop, errors reported; SCHED_FIFO."""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest

from internvla_core.control_loop import ControlLoop, set_thread_realtime


class FakeTime:
    """A clock that only moves when the loop sleeps or a step 'takes' time."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run_steps(loop: ControlLoop, count: int, calls: list) -> None:
    loop.start()
    deadline = time.monotonic() + 10.0
    while len(calls) < count and time.monotonic() < deadline:
        time.sleep(0.001)
    loop.stop()


def test_steps_land_on_absolute_deadlines_so_step_time_does_not_drift_the_rate():
    fake = FakeTime()
    calls: list[float] = []

    def step():
        calls.append(fake.now)
        fake.now += 0.003  # each step costs 3 ms of the 10 ms period

    loop = ControlLoop(0.01, step, clock=fake.clock, sleep=fake.sleep)
    run_steps(loop, 50, calls)
    starts = calls[:50]
    assert starts[0] == pytest.approx(100.01)
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx([0.01] * 49)
    assert all(s == pytest.approx(0.007) for s in fake.sleeps[1:50])  # the period minus the step
    assert loop.overruns == 0


def test_a_long_step_gives_one_late_step_and_counted_overruns_not_a_burst():
    fake = FakeTime()
    calls: list[float] = []

    def step():
        calls.append(fake.now)
        if len(calls) == 3:
            fake.now += 0.035  # 3.5 periods: the next three deadlines pass during the step

    loop = ControlLoop(0.01, step, clock=fake.clock, sleep=fake.sleep)
    run_steps(loop, 8, calls)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(calls)][:7]
    # the 4th step runs at once, 5 ms late for the third deadline; the two before it are skipped, not
    # made up: no run of back-to-back steps
    assert gaps[2] == pytest.approx(0.035)
    assert all(g >= 0.005 for g in gaps), gaps
    assert loop.overruns == 2
    on_grid = [(c - calls[0]) / 0.01 for c in calls[4:8]]
    assert on_grid == pytest.approx([round(x) for x in on_grid])  # back on the original deadline grid


def test_stop_ends_the_thread_during_its_sleep():
    calls: list[int] = []
    loop = ControlLoop(5.0, lambda: calls.append(1)).start()  # the first step is 5 s away
    time.sleep(0.05)
    begun = time.monotonic()
    assert loop.stop(timeout=2.0)
    assert time.monotonic() - begun < 2.0 and calls == [] and not loop.running


def test_a_failing_step_is_reported_and_the_loop_goes_on():
    errors: list[BaseException] = []
    calls: list[int] = []

    def step():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("bad tick")

    loop = ControlLoop(0.002, step, on_error=errors.append)
    run_steps(loop, 5, calls)
    assert len(calls) >= 5 and [str(e) for e in errors] == ["bad tick"]


def test_the_period_must_be_positive():
    with pytest.raises(ValueError, match="period"):
        ControlLoop(0.0, lambda: None)


def test_realtime_priority_is_granted_or_refused_with_what_to_do():
    assert "outside" in set_thread_realtime(0)
    answers: list[str] = []
    policies: list[int] = []

    def in_a_thread():  # never change the test runner's own thread
        answers.append(set_thread_realtime(10))
        policies.append(os.sched_getscheduler(0))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    if answers[0]:  # refused (no CAP_SYS_NICE / rtprio here): the message says how to grant it
        assert "CAP_SYS_NICE" in answers[0] or "refused" in answers[0]
        assert policies[0] != os.SCHED_FIFO
    else:
        assert policies[0] == os.SCHED_FIFO
    assert os.sched_getscheduler(0) != os.SCHED_FIFO  # the calling thread only


def test_the_loop_thread_runs_at_the_priority_it_reports():
    policies: list[int] = []
    loop = ControlLoop(0.005, lambda: policies.append(os.sched_getscheduler(0)), priority=5)
    run_steps(loop, 3, policies)
    if loop.priority_error:  # refused: the steps still ran, at normal scheduling
        assert policies[0] != os.SCHED_FIFO
    else:
        assert policies[0] == os.SCHED_FIFO
    plain: list[int] = []
    loop = ControlLoop(0.005, lambda: plain.append(os.sched_getscheduler(0)))
    run_steps(loop, 3, plain)
    assert loop.priority_error == "" and plain[0] != os.SCHED_FIFO
