"""One worker thread, one job running and at most one waiting: requests never pile up stale work.

The grounding node's model takes ~0.5 s per answer. A burst of service calls or instruction messages
must not queue minutes of work on images that are old by then: ``submit`` refuses a job when one is
running and one is already waiting. ``stop`` answers the waiting job at once (instead of letting its
caller time out), lets the job in hand finish and joins the thread. Pure threading, so the rules are
tested without ROS.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    """A unit of work; ``done`` fires when ``result`` or ``error`` is set (or the job was refused)."""

    payload: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str = ""


class OneSlotWorker:
    """Runs ``run(job)`` for each submitted job on its own thread (see the module docstring).

    ``run`` fills ``job.result`` / ``job.error``; an exception becomes ``job.error`` ("<what> failed:
    ...") and is passed to ``on_error`` so the owner can log it; ``done`` is always set."""

    def __init__(
        self,
        run: Callable[[Job], None],
        name: str = "worker",
        on_error: Callable[[Job, Exception], None] | None = None,
    ) -> None:
        self._run = run
        self._name = name
        self._on_error = on_error
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self.running = False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def waiting(self) -> bool:
        """True when a job waits behind the running one (the next submit is refused)."""
        return self._jobs.full()

    def start(self) -> None:
        if self.alive:
            return
        self._jobs = queue.Queue(maxsize=1)
        self.running = True
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, not_running: str, busy: str) -> bool:
        """Queue ``job``; False (with ``job.error`` set to the reason) when stopped or busy."""
        if not self.running:
            job.error = not_running
            return False
        try:
            self._jobs.put_nowait(job)
            return True
        except queue.Full:
            job.error = busy
            return False

    def stop(self, waiting_error: str, timeout: float = 30.0) -> None:
        """Refuse new jobs, answer the waiting one with ``waiting_error``, finish the one in hand, join."""
        self.running = False
        if self._thread is None:
            return
        while True:
            try:
                pending = self._jobs.get_nowait()
            except queue.Empty:
                break
            if pending is not None:
                pending.error = waiting_error
                pending.done.set()
        self._jobs.put(None)
        self._thread.join(timeout=timeout)
        self._thread = None

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception as exc:  # keep the worker alive; the caller gets the reason
                job.error = f"{self._name} failed: {exc}"
                if self._on_error is not None:
                    self._on_error(job, exc)
            finally:
                job.done.set()
