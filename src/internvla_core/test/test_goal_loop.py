"""The policy's goal loop without ROS: ends (success, steps, timeout, cancel, preemption, deactivation,
model error), refused observations (stale, missing view, bad image) and what reaches the publisher."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from internvla_core.backends import Prediction
from internvla_core.goal_loop import (
    DEACTIVATED,
    GoalEvent,
    GoalLoop,
    GoalPorts,
    GoalSettings,
    GoalState,
    LatestGoalWins,
    goal_rejection,
    grounding_summary,
)
from internvla_core.image_conversion import ImageConversionError
from internvla_core.observation import ObservationStore
from internvla_core.rtc import RealTimeChunking

IMAGE = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)


class Backend:
    """Returns a 4x2 chunk; ``gate`` (an Event) holds each inference until the test sets it."""

    def __init__(self, fail: Exception | None = None, gate: threading.Event | None = None) -> None:
        self.calls: list[dict] = []
        self.fail = fail
        self.gate = gate
        self.inferring = threading.Event()

    def predict(self, images, instruction, **kwargs) -> Prediction:
        self.calls.append({"images": images, "instruction": instruction, **kwargs})
        self.inferring.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        chunk = np.full((4, 2), float(len(self.calls)), dtype=np.float32)
        return Prediction(chunk, chunk.astype(np.float64), {"total": 0.001})


class Camera:
    """Puts an image into the store every ``period`` seconds, stamped ``age`` seconds in the past."""

    def __init__(self, store: ObservationStore, view="third_person", period=0.01, age=0.0) -> None:
        self.store, self.view, self.period, self.age = store, view, period, age
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.store.put(self.view, IMAGE, time.monotonic() - self.age)
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2)


class Recorder:
    """The node's side: records chunks, stops, feedback and refusals."""

    def __init__(self, to_arrays=None) -> None:
        self.chunks: list = []
        self.stops: list = []
        self.feedback: list = []
        self.refused: list[str] = []
        self.ports = GoalPorts(
            now=time.monotonic,
            to_arrays=to_arrays or (lambda images: [np.asarray(i) for i in images]),
            publish_chunk=self.chunks.append,
            publish_stop=self.stops.append,
            feedback=lambda steps, stages: self.feedback.append((steps, stages)),
            refused=self.refused.append,
        )


def settings(**overrides) -> GoalSettings:
    values = dict(
        instruction="put the carrot on the plate",
        views=("third_person",),
        unnorm_key="oxe_bridge",
        max_steps=3,
        max_duration=5.0,
        max_observation_age=1.0,
        poll_interval=0.05,
    )
    values.update(overrides)
    return GoalSettings(**values)


def run_in_thread(loop: GoalLoop) -> tuple[threading.Thread, list]:
    ends: list = []
    thread = threading.Thread(target=lambda: ends.append(loop.run()), daemon=True)
    thread.start()
    return thread, ends


def test_max_steps_ends_finished_after_one_chunk_per_new_observation():
    store, backend, out = ObservationStore(), Backend(), Recorder()
    loop = GoalLoop(settings(seed=5), store, backend, out.ports)
    with Camera(store):
        end = loop.run()
    assert (end.reason, end.success, end.steps) == ("finished", True, 3)
    assert [c.sequence for c in out.chunks] == [0, 1, 2]
    stamps = [c.observation.stamp for c in out.chunks]
    assert stamps == sorted(set(stamps))  # never the same image twice
    assert [call["seed"] for call in backend.calls] == [5, 6, 7]  # seed + sequence
    assert [steps for steps, _ in out.feedback] == [1, 2, 3]
    assert {"wait_for_obs", "image_conversion", "total", "publish"} <= set(out.feedback[-1][1])
    assert out.stops == [end] and not end.aborts and loop.state is GoalState.ENDED


def test_task_success_event_finishes_the_goal_with_success():
    store, out = ObservationStore(), Recorder()
    loop = GoalLoop(settings(max_steps=10_000), store, Backend(), out.ports)
    with Camera(store):
        thread, ends = run_in_thread(loop)
        assert _wait(lambda: out.chunks)
        loop.signal(GoalEvent.TASK_SUCCESS)
        thread.join(5)
    assert ends[0].reason == "finished" and ends[0].success and 1 <= ends[0].steps < 10_000


def test_cancel_during_inference_publishes_no_chunk_and_stops_the_executor():
    store, out, gate = ObservationStore(), Recorder(), threading.Event()
    backend = Backend(gate=gate)
    loop = GoalLoop(settings(max_steps=10_000), store, backend, out.ports)
    with Camera(store):
        thread, ends = run_in_thread(loop)
        assert backend.inferring.wait(5) and loop.state is GoalState.INFERRING
        loop.signal(GoalEvent.CANCEL)
        gate.set()  # the inference returns after the cancel
        thread.join(5)
    assert ends[0].reason == "cancelled" and ends[0].cancelled and not ends[0].success
    assert out.chunks == [] and out.stops == ends and not ends[0].aborts


def test_a_cancel_request_polled_from_the_goal_handle_ends_the_goal():
    store, out, requested = ObservationStore(), Recorder(), threading.Event()
    out.ports.cancel_requested = requested.is_set
    loop = GoalLoop(settings(max_steps=10_000), store, Backend(), out.ports)
    with Camera(store):
        thread, ends = run_in_thread(loop)
        assert _wait(lambda: out.chunks)
        requested.set()
        thread.join(5)
    assert ends[0].reason == "cancelled"
    count = len(out.chunks)
    time.sleep(0.05)
    assert len(out.chunks) == count


def test_cancel_while_waiting_for_an_image_ends_at_once():
    store, out = ObservationStore(), Recorder()
    loop = GoalLoop(settings(poll_interval=30.0), store, Backend(), out.ports)
    thread, ends = run_in_thread(loop)
    assert _wait(lambda: loop.state is GoalState.WAITING)
    start = time.monotonic()
    loop.signal(GoalEvent.CANCEL)
    thread.join(5)
    assert ends[0].reason == "cancelled" and time.monotonic() - start < 1.0


def test_no_image_ends_in_timeout_after_max_duration():
    store, backend, out = ObservationStore(), Backend(), Recorder()
    start = time.monotonic()
    end = GoalLoop(settings(max_duration=0.3), store, backend, out.ports).run()
    assert end.reason == "timeout" and not end.success and end.steps == 0
    assert 0.3 <= time.monotonic() - start < 2.0 and end.duration >= 0.3
    assert backend.calls == [] and out.chunks == [] and out.stops == [end]


def test_stale_images_are_refused_with_the_reason_and_never_inferred():
    store, backend, out = ObservationStore(), Backend(), Recorder()
    loop = GoalLoop(settings(max_duration=0.4), store, backend, out.ports)
    with Camera(store, age=30.0):
        end = loop.run()
    assert end.reason == "timeout" and backend.calls == [] and out.chunks == []
    assert "stale view 'third_person' by" in loop.health.observation_problem
    assert out.refused and out.refused[-1] == loop.health.observation_problem  # the age changes per refusal


def test_a_missing_second_view_is_never_replaced_by_one_view():
    store, backend, out = ObservationStore(), Backend(), Recorder()
    loop = GoalLoop(settings(views=("third_person", "wrist"), max_duration=0.3), store, backend, out.ports)
    with Camera(store):
        end = loop.run()
    assert end.reason == "timeout" and backend.calls == []
    assert "missing view 'wrist'" in loop.health.observation_problem


def test_a_second_view_arriving_after_the_primary_is_used_with_that_primary_image():
    # a lock-step simulator publishes one instant (third_person, then wrist) and waits for a command: no
    # newer primary image comes until the policy answers, so the loop must not wait for one
    store, backend, out = ObservationStore(), Backend(), Recorder()
    loop = GoalLoop(settings(views=("third_person", "wrist"), max_steps=1), store, backend, out.ports)
    store.put("third_person", IMAGE, time.monotonic())
    thread, ends = run_in_thread(loop)
    assert _wait(lambda: "missing view 'wrist'" in loop.health.observation_problem)
    store.put("wrist", IMAGE, time.monotonic())
    thread.join(5)
    assert ends and ends[0].reason == "finished" and len(backend.calls) == 1
    assert loop.health.observation_problem == ""


def test_a_used_observation_clears_the_reported_problem():
    store, out = ObservationStore(), Recorder()
    loop = GoalLoop(settings(max_steps=1), store, Backend(), out.ports)
    loop.health.observation_problem = "stale view 'third_person' by 30000 ms"
    with Camera(store):
        loop.run()
    assert loop.health.observation_problem == ""


def test_a_model_error_ends_the_goal_with_the_reason_and_aborts_the_executor():
    store, out = ObservationStore(), Recorder()
    loop = GoalLoop(settings(), store, Backend(fail=RuntimeError("CUDA out of memory")), out.ports)
    with Camera(store):
        end = loop.run()
    assert end.reason == "error: CUDA out of memory" and end.aborts and not end.success
    assert loop.health.last_error == "CUDA out of memory" and out.chunks == []


def test_a_bad_image_is_refused_and_the_goal_goes_on():
    def to_arrays(images):
        raise ImageConversionError("encoding 'yuv422' is not supported")

    store, backend, out = ObservationStore(), Backend(), Recorder(to_arrays)
    loop = GoalLoop(settings(max_duration=0.3), store, backend, out.ports)
    with Camera(store):
        end = loop.run()
    assert end.reason == "timeout" and backend.calls == []
    assert loop.health.observation_problem.startswith("bad camera image: encoding 'yuv422'")
    assert "supported: rgb8" in loop.health.observation_problem


def test_flipped_cameras_are_turned_upright_before_inference():
    store, backend, out = ObservationStore(), Backend(), Recorder()
    with Camera(store):
        GoalLoop(settings(max_steps=1, flip_images=True), store, backend, out.ports).run()
    np.testing.assert_array_equal(backend.calls[0]["images"][0], IMAGE[::-1, ::-1])


def test_rtc_guides_the_next_chunk_with_the_previous_one():
    store, backend, out = ObservationStore(), Backend(), Recorder()
    rtc = RealTimeChunking(control_period=0.005, delay_steps=1)
    with Camera(store, period=0.01):
        GoalLoop(settings(max_steps=2), store, backend, out.ports, rtc=rtc).run()
    assert "prefix" not in backend.calls[0]  # nothing executing at a goal's start
    assert backend.calls[1]["prefix"].shape[1] == 2 and len(backend.calls[1]["prefix_weights"])


def test_a_new_goal_preempts_the_running_one():
    store, out = ObservationStore(), Recorder()
    goals = LatestGoalWins()
    first = GoalLoop(settings(max_steps=10_000), store, Backend(), out.ports)
    second = GoalLoop(settings(max_steps=2), store, Backend(), out.ports)
    with Camera(store):
        goals.admit(first)
        thread, ends = run_in_thread(first)
        assert _wait(lambda: out.chunks)
        goals.admit(second)
        thread.join(5)
        assert ends[0].reason == "preempted" and not ends[0].success
        assert second.run().reason == "finished"
    assert goals.current is second


def test_stop_ends_the_goal_and_waits_for_the_inference_in_flight():
    store, out, gate = ObservationStore(), Recorder(), threading.Event()
    backend = Backend(gate=gate)
    goals = LatestGoalWins()
    loop = GoalLoop(settings(max_steps=10_000), store, backend, out.ports)
    goals.admit(loop)
    with Camera(store):
        thread, ends = run_in_thread(loop)
        assert backend.inferring.wait(5)
        assert not goals.stop(timeout=0.2)  # the model still runs: not idle yet
        gate.set()
        assert goals.stop(timeout=5)
        thread.join(5)
    assert ends[0].reason == DEACTIVATED and ends[0].aborts and out.chunks == []


def test_stop_with_no_goal_or_a_goal_not_started_returns_at_once():
    goals = LatestGoalWins()
    assert goals.stop(timeout=0.0)
    store, out = ObservationStore(), Recorder()
    loop = GoalLoop(settings(), store, Backend(), out.ports)
    goals.admit(loop)
    assert goals.stop(timeout=0.0)
    assert loop.run().reason == DEACTIVATED  # started late: ends before any inference


def test_a_goal_without_views_is_a_programming_error():
    with pytest.raises(ValueError, match="at least one view"):
        GoalLoop(settings(views=()), ObservationStore(), Backend(), Recorder().ports)


def test_goal_rejection_names_the_reason():
    assert goal_rejection("  ", "", "widowx_bridge") == "empty instruction"
    assert "differs from the configured 'widowx_bridge'" in goal_rejection(
        "pick", "google_robot", "widowx_bridge"
    )
    assert goal_rejection("pick", "", "widowx_bridge") is None
    assert goal_rejection("pick", "widowx_bridge", "widowx_bridge") is None


def test_grounding_summary_lists_box_centres_and_points():
    box = SimpleNamespace(label="carrot", x1=10, y1=20, x2=30, y2=40)
    point = SimpleNamespace(label="plate", u=5.4, v=7.6)
    assert grounding_summary(None) == ""
    assert grounding_summary(SimpleNamespace(objects=[box], points=[point])) == (
        "carrot box (20, 30); plate @ (5, 8)"
    )
    many = SimpleNamespace(objects=[box] * 50, points=[])
    assert len(grounding_summary(many)) == 200


def _wait(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


def test_a_goal_value_of_zero_takes_the_nodes_default():
    params = SimpleNamespace(
        max_steps=300, max_duration=120.0, max_observation_age=1.0, cfg_scale=1.5, num_ddim_steps=10, seed=-1
    )
    default = SimpleNamespace(instruction="pick", max_steps=0, max_duration=0.0)
    own = SimpleNamespace(instruction="pick", max_steps=5, max_duration=2.5)
    got = GoalSettings.for_goal(default, params, ["third_person"], "oxe_bridge", flip_images=True)
    assert (got.max_steps, got.max_duration, got.views, got.flip_images) == (
        300,
        120.0,
        ("third_person",),
        True,
    )
    got = GoalSettings.for_goal(own, params, ["third_person"], "oxe_bridge", False, poll_interval=0.1)
    assert (got.max_steps, got.max_duration, got.poll_interval) == (5, 2.5, 0.1)


def test_health_reports_the_observation_problem_before_the_last_error():
    health = GoalLoop(settings(), ObservationStore(), Backend(), Recorder().ports).health
    assert health.problem == "" and dict(health.items())["observation"] == "ok"
    health.last_error = "server closed"
    assert health.problem == "server closed"
    health.observation_problem = "missing view 'wrist'"
    assert health.problem == "missing view 'wrist'"
    health.stats.add_stages({"total": 0.05})
    assert dict(health.items())["total_p50_ms"] == "50.0"
