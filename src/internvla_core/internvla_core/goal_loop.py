"""One instruction goal of the policy, as a state machine without ROS.

Why here and not in the node: the goal's loop decides when to query the model, which observation it
may use, when to publish a chunk and when the goal ends. Each of those decisions needs a test
(cancel while the model infers, a stale camera, a model error, the success signal) that should not
need a ROS graph. The node only converts messages and forwards events.

States (``GoalState``): PENDING (accepted, ``run`` not called yet) -> WAITING (for an image newer
than the last one used) -> INFERRING (the model runs; no lock is held, so events still arrive) ->
WAITING ... -> ENDED. Events (``GoalEvent``) arrive from any thread through ``signal``: CANCEL,
PREEMPT (a newer goal was accepted: the newest wins), DEACTIVATE (the node leaves ACTIVE) and
TASK_SUCCESS. They are checked at the top of every cycle and after every inference, so a chunk is
never published for a goal that has just ended. Whatever ends the goal, ``publish_stop`` runs first:
the executor drops its chunks and holds.

``run`` blocks until the goal ends; the node calls it from the action server's execute callback,
on an executor thread of its own callback group, never from a subscription or timer callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from .image_conversion import COLOUR_ENCODINGS, ImageConversionError, rotate_half_turn
from .latency import RateMeter, RollingStats, latency_items
from .observation import NotReady, Observation, ObservationStore

DEACTIVATED = "error: policy_node was deactivated"


class GoalState(Enum):
    PENDING = "pending"
    WAITING = "waiting for an observation"
    INFERRING = "inferring"
    ENDED = "ended"


class GoalEvent(Enum):
    """What can end a goal from outside; the value is the goal's end reason."""

    CANCEL = "cancelled"
    PREEMPT = "preempted"
    DEACTIVATE = DEACTIVATED
    TASK_SUCCESS = "finished"


# checked in this order: a cancel wins over a success that arrived at the same time
EVENT_PRIORITY = (GoalEvent.CANCEL, GoalEvent.PREEMPT, GoalEvent.DEACTIVATE, GoalEvent.TASK_SUCCESS)


@dataclass(frozen=True)
class GoalEnd:
    """How a goal ended: ``reason`` is the ExecuteInstruction result's reason."""

    reason: str
    success: bool
    steps: int
    duration: float

    @property
    def cancelled(self) -> bool:
        return self.reason == GoalEvent.CANCEL.value

    @property
    def aborts(self) -> bool:
        """An error ended it: the stop chunk says ABORT instead of STOP."""
        return self.reason.startswith("error")


@dataclass(frozen=True)
class GoalSettings:
    """Everything one goal needs, read once when it starts (a parameter change applies to the next)."""

    instruction: str
    views: tuple[str, ...]  # the first is the primary view: its stamp is the chunk's observation stamp
    unnorm_key: str
    max_steps: int
    max_duration: float  # seconds of monotonic time
    max_observation_age: float  # seconds on the clock of the image stamps
    cfg_scale: float = 1.5
    num_ddim_steps: int = 10
    seed: int = -1  # -1: random noise every inference; else seed + sequence
    flip_images: bool = False  # the embodiment's cameras are mounted upside down
    poll_interval: float = 0.5  # longest wait for an image before the end conditions are re-checked

    @classmethod
    def for_goal(cls, goal, params, views, unnorm_key: str, flip_images: bool, **kw) -> GoalSettings:
        """An ExecuteInstruction goal's settings: its max_steps / max_duration, or the node's default
        for a 0; ``params`` has max_steps, max_duration, max_observation_age, cfg_scale,
        num_ddim_steps and seed."""
        return cls(
            instruction=goal.instruction,
            views=tuple(views),
            unnorm_key=unnorm_key,
            max_steps=goal.max_steps or params.max_steps,
            max_duration=goal.max_duration or params.max_duration,
            max_observation_age=params.max_observation_age,
            cfg_scale=params.cfg_scale,
            num_ddim_steps=params.num_ddim_steps,
            seed=params.seed,
            flip_images=flip_images,
            **kw,
        )


@dataclass
class PolicyHealth:
    """What /diagnostics reports; shared by every goal of one node (thread-safe enough: plain writes)."""

    observation_problem: str = ""  # why the last observation was refused ('' once one is used)
    last_error: str = ""
    stats: RollingStats = field(default_factory=lambda: RollingStats(window=200))
    rate: RateMeter = field(default_factory=RateMeter)

    @property
    def problem(self) -> str:
        """What the operator should look at first ('' when nothing is wrong)."""
        return self.observation_problem or self.last_error

    def items(self) -> list[tuple[str, str]]:
        """Key-value pairs for /diagnostics: the problems, the inference rate, stage latencies."""
        return [
            ("observation", self.observation_problem or "ok"),
            ("last_error", self.last_error),
            ("inference_rate_hz", f"{self.rate.rate():.2f}"),
            *latency_items(self.stats),
        ]


@dataclass(frozen=True)
class PublishedChunk:
    """What the node turns into an ActionChunk (and the goal's feedback)."""

    prediction: Any  # internvla_core.backends.Prediction
    observation: Observation
    sequence: int
    inference_latency: float
    wait: float  # seconds waited for the observation
    convert: float  # seconds converting its images


@dataclass
class GoalPorts:
    """The node's side: clock, message conversion and publishing. Plain callables, so tests pass lambdas.

    ``now``: seconds on the clock the image stamps use (ROS time; sim time in lock-step).
    ``to_arrays``: the observation's image messages as HxWx3 uint8 arrays (may raise ImageConversionError).
    ``publish_chunk`` returns nothing; ``feedback(steps, stages)`` after each chunk;
    ``publish_stop(end)`` once, when the goal ends; ``refused(reason)`` when an observation is not used;
    ``cancel_requested()`` is polled with the events (a ROS goal handle's ``is_cancel_requested``: its
    state turns CANCELING only after the cancel callback returns, so the loop must not end before).
    """

    now: Callable[[], float]
    to_arrays: Callable[[Sequence[Any]], list[np.ndarray]]
    publish_chunk: Callable[[PublishedChunk], None]
    publish_stop: Callable[[GoalEnd], None]
    feedback: Callable[[int, dict[str, float]], None] = lambda steps, stages: None
    refused: Callable[[str], None] = lambda reason: None
    cancel_requested: Callable[[], bool] = lambda: False


class GoalLoop:
    """Runs one goal: one model query per new observation until an end condition holds."""

    def __init__(
        self,
        settings: GoalSettings,
        store: ObservationStore,
        backend,
        ports: GoalPorts,
        health: PolicyHealth | None = None,
        rtc=None,
    ) -> None:
        if not settings.views:
            raise ValueError("a goal needs at least one view")
        self.settings = settings
        self.store = store
        self.backend = backend
        self.ports = ports
        self.health = health if health is not None else PolicyHealth()
        self.rtc = rtc
        self.state = GoalState.PENDING
        self.steps = 0
        self._events: set[GoalEvent] = set()
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    # ------------------------------------------------------------------------------- events
    def signal(self, event: GoalEvent) -> None:
        """Record an event (any thread) and wake a wait for an image so it is seen at once."""
        with self._lock:
            self._events.add(event)
        self.store.wake()

    def _pending_event(self) -> GoalEvent | None:
        if self.ports.cancel_requested():
            return GoalEvent.CANCEL
        with self._lock:
            return next((e for e in EVENT_PRIORITY if e in self._events), None)

    def _ending(self) -> bool:
        return self._pending_event() is not None

    @property
    def ended(self) -> bool:
        return self.state is GoalState.ENDED

    def wait_idle(self, timeout: float) -> bool:
        """True once ``run`` is not executing (never started, or returned)."""
        return self._idle.wait(timeout)

    # ------------------------------------------------------------------------------- the loop
    def run(self) -> GoalEnd:
        self._idle.clear()
        try:
            return self._run()
        finally:
            self.state = GoalState.ENDED
            self._idle.set()

    def _run(self) -> GoalEnd:
        s = self.settings
        start = time.monotonic()
        last_stamp: float | None = None
        primary = s.views[0]
        if self.rtc is not None:
            self.rtc.reset()  # a goal starts from rest: nothing executing to continue
        while True:
            end = self._end_condition(start)
            if end is not None:
                return self._finish(end, start)
            self.state = GoalState.WAITING
            wait_start = time.perf_counter()
            if not self.store.wait_for_newer(
                primary, last_stamp, timeout=s.poll_interval, keep_waiting=lambda: not self._ending()
            ):
                continue
            wait = time.perf_counter() - wait_start
            observation = self.store.assemble(list(s.views), self.ports.now(), s.max_observation_age)
            if isinstance(observation, NotReady):
                self._refuse(observation.reason)
                if observation.missing and primary not in observation.missing:
                    # another camera's first image may still be on its way: wait for it and assemble
                    # this primary image again (a lock-step simulator sends no newer one until it is
                    # commanded, so waiting for the next primary image would stall it)
                    self.store.wait_for_newer(
                        observation.missing[0], None, s.poll_interval, keep_waiting=lambda: not self._ending()
                    )
                    continue
                last_stamp = self.store.latest(primary).stamp  # wait for the next image, not this one
                continue
            self.health.observation_problem = ""
            self.state = GoalState.INFERRING
            try:
                chunk = self._infer(observation, wait)
            except ImageConversionError as exc:
                self._refuse(f"bad camera image: {exc} (supported: {', '.join(COLOUR_ENCODINGS)})")
                last_stamp = observation.stamp
                continue
            except Exception as exc:  # model or remote failure ends the goal with the reason
                self.health.last_error = str(exc)
                return self._finish((f"error: {exc}", False), start)
            if self._ending():
                continue  # no chunk for a goal that ended while the model ran
            self._publish(chunk)
            last_stamp = observation.stamp

    def _end_condition(self, start: float) -> tuple[str, bool] | None:
        event = self._pending_event()
        if event is not None:
            return event.value, event is GoalEvent.TASK_SUCCESS
        if self.steps >= self.settings.max_steps:
            return "finished", True
        if time.monotonic() - start > self.settings.max_duration:
            return "timeout", False
        return None

    def _infer(self, observation: Observation, wait: float) -> PublishedChunk:
        s = self.settings
        t_convert = time.perf_counter()
        views = self.ports.to_arrays(observation.views)
        if s.flip_images:
            views = [rotate_half_turn(v) for v in views]
        convert = time.perf_counter() - t_convert
        # rtc: the previous chunk's rows that execute while this one is computed
        prefix = self.rtc.prefix(observation.stamp) if self.rtc is not None else None
        guidance = {} if prefix is None else {"prefix": prefix.actions, "prefix_weights": prefix.weights}
        t0 = time.perf_counter()
        prediction = self.backend.predict(
            views,
            s.instruction,
            unnorm_key=s.unnorm_key,
            cfg_scale=s.cfg_scale,
            num_ddim_steps=s.num_ddim_steps,
            seed=None if s.seed < 0 else s.seed + self.steps,
            **guidance,
        )
        latency = time.perf_counter() - t0
        return PublishedChunk(prediction, observation, self.steps, latency, wait, convert)

    def _publish(self, chunk: PublishedChunk) -> None:
        t_pub = time.perf_counter()
        self.ports.publish_chunk(chunk)
        publish = time.perf_counter() - t_pub
        if self.rtc is not None:  # observation -> published, on the clock of the stamps
            stamp = chunk.observation.stamp
            self.rtc.record(chunk.prediction.normalized, stamp, self.ports.now() - stamp)
        stages = {
            "wait_for_obs": chunk.wait,
            "image_conversion": chunk.convert,
            **chunk.prediction.stages,
            "publish": publish,
        }
        self.health.stats.add_stages(stages)
        self.health.rate.tick()
        self.steps += 1
        self.ports.feedback(self.steps, stages)

    def _refuse(self, reason: str) -> None:
        self.health.observation_problem = reason
        self.ports.refused(reason)

    def _finish(self, end: tuple[str, bool], start: float) -> GoalEnd:
        reason, success = end
        result = GoalEnd(reason, success, self.steps, time.monotonic() - start)
        self.ports.publish_stop(result)
        return result


class LatestGoalWins:
    """At most one goal runs: admitting a new one preempts the running one (its reason "preempted")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: GoalLoop | None = None

    @property
    def current(self) -> GoalLoop | None:
        return self._current

    def admit(self, loop: GoalLoop) -> None:
        with self._lock:
            if self._current is not None and not self._current.ended:
                self._current.signal(GoalEvent.PREEMPT)
            self._current = loop

    def signal(self, event: GoalEvent) -> None:
        """Forward an event to the current goal, if one is running or about to."""
        with self._lock:
            current = self._current
        if current is not None and not current.ended:
            current.signal(event)

    def stop(self, timeout: float) -> bool:
        """End the current goal (DEACTIVATE) and wait until its loop has returned; False on timeout.

        The model must not be freed while an inference runs in the goal's thread: a torch thread alive
        at interpreter exit aborts the process.
        """
        with self._lock:
            current = self._current
        if current is None:
            return True
        current.signal(GoalEvent.DEACTIVATE)
        return current.wait_idle(timeout)


def goal_rejection(instruction: str, embodiment: str, configured: str) -> str | None:
    """Why a goal is refused before it starts, or None (the node adds "not active")."""
    if not instruction.strip():
        return "empty instruction"
    if embodiment and embodiment != configured:
        return (
            f"embodiment '{embodiment}' differs from the configured '{configured}' "
            "(reconfigure the node to switch embodiments)"
        )
    return None


def grounding_summary(grounding) -> str:
    """One line of the latest Grounding (objects' box centres, points) for the goal's feedback."""
    if grounding is None:
        return ""
    parts = [f"{o.label} box ({(o.x1 + o.x2) / 2:.0f}, {(o.y1 + o.y2) / 2:.0f})" for o in grounding.objects]
    parts += [f"{p.label} @ ({p.u:.0f}, {p.v:.0f})" for p in grounding.points]
    return "; ".join(parts)[:200]
