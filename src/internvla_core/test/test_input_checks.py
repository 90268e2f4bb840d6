"""Input sanity checks without ROS: stamps, chunk verdicts per reason, state values and ages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from internvla_core.input_checks import CHUNK_REJECTIONS, Stamp, check_chunk, check_state, stamp_seconds
from internvla_core.status import LEVELS, TEXTS, StatusCode

CHUNK = np.zeros((4, 7))
POSE = np.eye(4)
POSE[:3, 3] = [0.4, 0.0, 0.3]


def test_stamps_with_invalid_nanosec_or_negative_seconds_are_refused_not_carried():
    assert stamp_seconds(Stamp(3, 500_000_000)) == (3.5, "")
    for stamp, words in (
        (Stamp(3, 1_000_000_000), "nanosec"),
        (Stamp(-1, 0), "negative"),
        (math.inf, "finite"),
    ):
        seconds, problem = stamp_seconds(stamp)
        assert math.isnan(seconds) and words in problem
    assert stamp_seconds("x")[1] and stamp_seconds(None)[1]


@pytest.mark.parametrize(
    "chunk, observation, header, reason",
    [
        (np.zeros((4, 6)), 0.0, None, "shape"),
        (np.zeros((0, 7)), 0.0, None, "shape"),
        (np.zeros(7), 0.0, None, "shape"),
        ([["a"] * 7], 0.0, None, "shape"),
        (np.full((4, 7), np.nan), 0.0, None, "not_finite"),
        (CHUNK, Stamp(10, 2**32 - 1), None, "invalid_stamp"),
        (CHUNK, 10.0, Stamp(10, 1_000_000_000), "invalid_stamp"),
        (CHUNK, 10.6, None, "future_stamp"),
        (CHUNK, 9.0, 10.6, "future_stamp"),
        (CHUNK, 9.9, 9.8, "observation_after_header"),
    ],
)
def test_each_bad_chunk_gets_its_reason(chunk, observation, header, reason):
    verdict = check_chunk(chunk, 7, observation, 10.0, 0.5, header)
    assert not verdict.ok and verdict.reason == reason and reason in CHUNK_REJECTIONS and verdict.message


def test_good_chunks_pass_with_their_observation_time():
    verdict = check_chunk(CHUNK, 7, Stamp(10, 400_000_000), 10.0, 0.5, Stamp(10, 450_000_000))
    assert verdict.ok and verdict.observation_time == pytest.approx(10.4)
    assert check_chunk(CHUNK, 7, 9.0, 10.0, 0.5, Stamp(0, 0)).ok  # zero header = not given
    assert not check_chunk(CHUNK, 7, 9.0, math.nan, 0.5).ok  # a broken clock accepts nothing


def test_state_checks_name_the_input_and_say_what_is_wrong():
    q = np.zeros(7)
    assert check_state(1.0, POSE, q, 7, joints_stamp=0.9, max_state_age=0.2).ok
    stale = check_state(1.0, POSE, q, 7, joints_stamp=0.5, max_state_age=0.2)
    assert stale.code == "stale_state" and stale.message.startswith("joint_states is stale: 0.500 s old")
    future = check_state(1.0, POSE, q, 7, joints_stamp=5.0, max_state_age=0.2, max_future_stamp=0.5)
    assert future.code == "invalid_state" and "in the future" in future.message
    old_pose = check_state(1.0, POSE, None, pose_stamp=Stamp(0, 0), max_state_age=0.2)
    assert old_pose.code == "stale_state" and old_pose.message.startswith("ee_pose")
    sheared = POSE.copy()
    sheared[0, 1] = 0.5
    bad_row = POSE.copy()
    bad_row[3, 0] = 1.0
    for pose, joints, words in (
        (POSE, np.array([0.0, np.nan]), "joint_states contains NaN"),
        (POSE, np.zeros(6), "joint_states has shape (6,)"),
        (POSE, np.zeros((7, 1)), "joint_states has shape"),
        (np.full((4, 4), np.inf), None, "ee_pose contains NaN"),
        (np.eye(3), None, "ee_pose has shape (3, 3)"),
        (sheared, None, "not a rotation"),
        (bad_row, None, "not a homogeneous transform"),
        (POSE, np.full(7, 2e3), "beyond 1000"),
    ):
        verdict = check_state(1.0, pose, joints, None if joints is None or joints.size == 2 else 7)
        assert verdict.code == "invalid_state" and words in verdict.message, verdict.message
    bounds = (np.full(7, -1.0), np.full(7, 1.0))
    assert check_state(1.0, POSE, np.full(7, 1.3), 7, bounds).ok  # slightly outside: moved back by the filter
    assert "outside the joint limits" in check_state(1.0, POSE, np.full(7, 1.6), 7, bounds).message


def test_every_status_code_has_a_fixed_text_and_a_level():
    assert set(TEXTS) == set(StatusCode) == set(LEVELS)
    assert LEVELS[StatusCode.STALE_STATE] == LEVELS[StatusCode.INVALID_STATE] == 2  # ERROR
    assert LEVELS[StatusCode.OK] == 0
