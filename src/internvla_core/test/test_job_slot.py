"""OneSlotWorker: one job runs, one waits, more are refused; stopping answers the waiting one."""

from __future__ import annotations

import threading

from internvla_core.job_slot import Job, OneSlotWorker


class Gate:
    """A run function that holds each job until released, so the tests see the worker busy."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.ran: list = []

    def __call__(self, job: Job) -> None:
        self.started.set()
        assert self.release.wait(timeout=10)
        self.ran.append(job.payload)
        job.result = job.payload * 2


def test_one_job_runs_one_waits_and_a_third_is_refused_with_the_busy_reason():
    gate = Gate()
    worker = OneSlotWorker(gate, "grounding")
    worker.start()
    first, second, third = Job(1), Job(2), Job(3)
    assert worker.submit(first, "stopped", "busy")
    assert gate.started.wait(timeout=5)
    assert worker.submit(second, "stopped", "busy") and worker.waiting
    assert not worker.submit(third, "stopped", "busy") and third.error == "busy"
    gate.release.set()
    assert first.done.wait(5) and second.done.wait(5)
    assert (first.result, second.result, gate.ran) == (2, 4, [1, 2])
    worker.stop("gone")
    assert not worker.alive


def test_stop_answers_the_waiting_job_at_once_and_finishes_the_one_in_hand():
    gate = Gate()
    worker = OneSlotWorker(gate, "grounding")
    worker.start()
    running, waiting = Job(1), Job(2)
    worker.submit(running, "stopped", "busy")
    assert gate.started.wait(timeout=5)
    worker.submit(waiting, "stopped", "busy")
    stopper = threading.Thread(target=worker.stop, args=("deactivated before it ran",))
    stopper.start()
    assert waiting.done.wait(5) and waiting.error == "deactivated before it ran"
    assert not running.done.is_set()  # still in hand
    gate.release.set()
    stopper.join(5)
    assert running.done.is_set() and running.result == 2 and not worker.alive
    late = Job(3)
    assert not worker.submit(late, "not active", "busy") and late.error == "not active"


def test_an_exception_becomes_the_jobs_error_and_the_worker_keeps_serving():
    seen = []

    def run(job: Job) -> None:
        if job.payload == "bad":
            raise RuntimeError("boom")
        job.result = "ok"

    worker = OneSlotWorker(run, "grounding", on_error=lambda job, exc: seen.append(str(exc)))
    worker.start()
    bad, good = Job("bad"), Job("good")
    worker.submit(bad, "", "")
    assert bad.done.wait(5) and bad.error == "grounding failed: boom" and seen == ["boom"]
    worker.submit(good, "", "")
    assert good.done.wait(5) and good.result == "ok" and worker.alive
    worker.stop("")
    worker.start()  # restartable: activate after deactivate
    again = Job("good")
    worker.submit(again, "", "")
    assert again.done.wait(5) and again.result == "ok"
    worker.stop("")
