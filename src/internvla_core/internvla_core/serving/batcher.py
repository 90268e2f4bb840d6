"""Coalesce requests from many connections into batches: window, fairness, bounded queue, timeouts.

One worker thread owns the model. It takes the oldest waiting job of the next client in round-robin
order, then keeps the batch open for at most ``max_wait`` seconds while it fills up to ``max_batch``
samples with compatible jobs (same ``key``), taking at most one job per client per round. So a client
that sends many requests cannot starve one that sends few, and a lone request waits at most
``max_wait`` for company. The queue holds at most ``max_queue`` jobs: beyond that ``submit`` raises
:class:`ServerBusyError` at once (the server turns it into a "busy" reply) rather than letting latency grow
without bound. A job that is still queued at its deadline fails with :class:`JobTimeoutError`; a cancelled
job (its client hung up) is dropped before it costs a forward pass.

If a batch raises, its jobs are retried one by one, so one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any


class ServerBusyError(RuntimeError):
    """The queue is full; the client should retry later."""


class JobTimeoutError(RuntimeError):
    """The job waited in the queue past its deadline and was not run. Not a ``TimeoutError``: that is
    what ``Future.result(timeout)`` raises while a job is merely still running."""


@dataclass(eq=False)
class Job:
    client: Hashable
    key: Hashable  # jobs with equal keys may share a forward pass
    size: int  # samples in this job
    payload: Any
    deadline: float
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        self.future.cancel()


@dataclass
class BatcherStats:
    batches: int = 0
    jobs: int = 0
    samples: int = 0
    busy_rejections: int = 0
    timeouts: int = 0
    largest_batch: int = 0


class Batcher:
    """``run_batch(payloads) -> results`` is called on the worker thread, one batch at a time."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Any]], Sequence[Any]],
        *,
        max_batch: int = 8,
        max_wait: float = 0.005,
        max_queue: int = 64,
        timeout: float = 30.0,
        expected_clients: Callable[[], int] | None = None,
    ) -> None:
        """``expected_clients``: how many clients could still send (the server's open connections);
        once every one of them is in the batch, waiting out ``max_wait`` gains nothing, so a lone robot
        pays no window at all."""
        if max_batch < 1 or max_queue < 1 or max_wait < 0 or timeout <= 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait >= 0 and timeout > 0")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.timeout = timeout
        self.expected_clients = expected_clients
        self.stats = BatcherStats()
        self._queues: collections.OrderedDict[Hashable, collections.deque[Job]] = collections.OrderedDict()
        self._queued = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._worker = threading.Thread(target=self._loop, name="internvla-serve-batcher", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------------------------------ public
    def submit(self, client: Hashable, key: Hashable, size: int, payload: Any) -> Job:
        with self._cond:
            if self._stopped:
                raise RuntimeError("the batcher is stopped")
            if self._queued >= self.max_queue:
                self.stats.busy_rejections += 1
                raise ServerBusyError(
                    f"server busy: {self._queued} requests are queued (max_queue {self.max_queue}); retry later"
                )
            job = Job(client, key, size, payload, time.monotonic() + self.timeout)
            self._queues.setdefault(client, collections.deque()).append(job)
            self._queued += 1
            self._cond.notify_all()
        return job

    @property
    def queued(self) -> int:
        with self._cond:
            return self._queued

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._worker.join(timeout=30)
        with self._cond:
            for queue in self._queues.values():
                for job in queue:
                    _fail(job.future, RuntimeError("the server is shutting down"))
            self._queues.clear()
            self._queued = 0

    # ------------------------------------------------------------------------------------------ worker
    def _loop(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _collect(self) -> list[Job] | None:
        """Wait for work, then fill one batch within the window (None when stopped)."""
        with self._cond:
            while not self._stopped and self._queued == 0:
                self._cond.wait()
            if self._stopped:
                return None
            self._expire()
            first = self._take_next()
            if first is None:
                return []
            batch, samples = [first], first.size
            window_end = time.monotonic() + self.max_wait
            while samples < self.max_batch:
                added = self._fill_round(batch, samples)
                samples += added
                if samples >= self.max_batch:
                    break
                if added:
                    continue
                if (
                    self.expected_clients is not None
                    and len({j.client for j in batch}) >= self.expected_clients()
                ):
                    break  # everyone who could join has joined
                remaining = window_end - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                if self._stopped:
                    break
                self._expire()
            return batch

    def _fill_round(self, batch: list[Job], samples: int) -> int:
        """One round-robin pass: at most one compatible job per client; returns samples added."""
        added = 0
        key = batch[0].key
        for client in list(self._queues):
            queue = self._queues.get(client)
            job = self._first_compatible(queue, key) if queue else None
            if job is None or samples + added + job.size > self.max_batch:
                continue
            queue.remove(job)
            self._queued -= 1
            self._rotate(client, queue)
            batch.append(job)
            added += job.size
        return added

    def _take_next(self) -> Job | None:
        for client in list(self._queues):
            queue = self._queues[client]
            while queue and queue[0].future.cancelled():
                queue.popleft()
                self._queued -= 1
            if queue:
                job = queue.popleft()
                self._queued -= 1
                self._rotate(client, queue)
                return job
            del self._queues[client]
        return None

    @staticmethod
    def _first_compatible(queue: collections.deque[Job], key: Hashable) -> Job | None:
        for job in queue:
            if job.key == key and not job.future.cancelled():
                return job
        return None

    def _rotate(self, client: Hashable, queue: collections.deque[Job]) -> None:
        """The client just served goes to the back of the round-robin order (or leaves it, if idle)."""
        del self._queues[client]
        if queue:
            self._queues[client] = queue

    def _expire(self) -> None:
        now = time.monotonic()
        for client in list(self._queues):
            queue = self._queues[client]
            keep = collections.deque()
            for job in queue:
                if job.future.cancelled():
                    self._queued -= 1
                elif job.deadline <= now:
                    self._queued -= 1
                    self.stats.timeouts += 1
                    _fail(
                        job.future,
                        JobTimeoutError(f"request timed out after {now - job.enqueued:.1f} s in the queue"),
                    )
                else:
                    keep.append(job)
            if keep:
                self._queues[client] = keep
            else:
                del self._queues[client]

    def _run(self, batch: list[Job]) -> None:
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        size = sum(job.size for job in batch)
        self.stats.samples += size
        self.stats.largest_batch = max(self.stats.largest_batch, size)
        try:
            results = self.run_batch([job.payload for job in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for job in batch:  # isolate the culprit: every other job still gets its answer
                try:
                    job.future.set_result(self.run_batch([job.payload])[0])
                except Exception as single_exc:
                    job.future.set_exception(single_exc)
            return
        for job, result in zip(batch, results):
            job.future.set_result(result)


def _fail(future: Future, exc: BaseException) -> None:
    """Fail a queued job's future unless its client cancelled it meanwhile (cancel runs unlocked)."""
    with contextlib.suppress(InvalidStateError):
        future.set_exception(exc)
