"""Observation assembly: missing and stale views are refused with a precise reason; waiting is bounded."""

from __future__ import annotations

import threading
import time

import pytest

from internvla_core.observation import EE_POSE, JOINT_STATE, NotReady, Observation, ObservationStore


def test_missing_view_is_named_in_the_reason():
    store = ObservationStore()
    store.put("third_person", "img", 10.0)
    result = store.assemble(["third_person", "wrist"], now=10.1, max_age=1.0)
    assert isinstance(result, NotReady)
    assert result.missing == ("wrist",) and "missing view 'wrist'" in result.reason


def test_stale_view_reports_by_how_many_milliseconds():
    store = ObservationStore()
    store.put("third_person", "img", 10.0)
    result = store.assemble(["third_person"], now=11.25, max_age=1.0)
    assert isinstance(result, NotReady)
    assert result.stale == pytest.approx({"third_person": 0.25})
    assert "'third_person' by 250 ms" in result.reason and "1000 ms" in result.reason


def test_only_the_stale_view_is_blamed_when_one_of_two_is_old():
    store = ObservationStore()
    store.put("third_person", "a", 10.0)
    store.put("wrist", "b", 8.0)
    result = store.assemble(["third_person", "wrist"], now=10.2, max_age=0.5)
    assert isinstance(result, NotReady) and set(result.stale) == {"wrist"}


def test_fresh_views_make_an_observation_stamped_with_the_first_view_in_required_order():
    store = ObservationStore()
    store.put("wrist", "w", 10.05)
    store.put("third_person", "t", 10.0)
    store.put(JOINT_STATE, "q", 10.01)
    store.put(EE_POSE, "pose", 10.02)
    result = store.assemble(["third_person", "wrist"], now=10.1, max_age=0.5)
    assert isinstance(result, Observation)
    assert result.views == ["t", "w"] and result.stamp == 10.0
    assert result.ages == pytest.approx({"third_person": 0.1, "wrist": 0.05})
    assert result.joint_state.value == "q" and result.ee_pose.value == "pose"


def test_a_stamp_from_the_future_counts_as_fresh():
    store = ObservationStore()
    store.put("third_person", "img", 12.0)
    result = store.assemble(["third_person"], now=10.0, max_age=0.1)
    assert isinstance(result, Observation) and result.ages["third_person"] == 0.0


def test_age_exactly_max_age_is_still_accepted():
    store = ObservationStore()
    store.put("third_person", "img", 10.0)
    assert isinstance(store.assemble(["third_person"], now=10.5, max_age=0.5), Observation)


def test_no_views_is_a_programming_error():
    with pytest.raises(ValueError):
        ObservationStore().assemble([], now=0.0, max_age=1.0)


def test_wait_for_newer_returns_only_for_a_newer_stamp():
    store = ObservationStore()
    store.put("third_person", "old", 5.0)
    assert store.wait_for_newer("third_person", None, timeout=0.01)
    start = time.monotonic()
    assert not store.wait_for_newer("third_person", 5.0, timeout=0.05)
    assert time.monotonic() - start >= 0.05
    threading.Timer(0.05, store.put, args=("third_person", "new", 5.1)).start()
    assert store.wait_for_newer("third_person", 5.0, timeout=5.0)
    assert store.latest("third_person").value == "new"


def test_wait_for_newer_gives_up_when_told_to_stop_and_woken():
    store = ObservationStore()
    running = [True]

    def stop() -> None:
        running[0] = False
        store.wake()

    threading.Timer(0.05, stop).start()
    start = time.monotonic()
    assert not store.wait_for_newer("third_person", None, timeout=10.0, keep_waiting=lambda: running[0])
    assert time.monotonic() - start < 5.0


def test_clear_forgets_every_input():
    store = ObservationStore()
    store.put("third_person", "img", 1.0)
    store.clear()
    assert store.latest("third_person") is None
