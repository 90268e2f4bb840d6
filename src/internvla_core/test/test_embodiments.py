"""Embodiment conventions: rotations, gripper mappings, stickiness, warm-up and frames, per upstream."""

from __future__ import annotations

import math

import numpy as np
import pytest

from internvla_core.embodiments import EMBODIMENTS, compose_delta, get_embodiment
from internvla_core.normalization import UnnormKeyError
from internvla_core.rotations import (
    matrix_to_quaternion,
    quaternion_to_matrix,
    rotvec_to_matrix,
    rpy_to_matrix,
    rpy_to_rotvec,
)


def test_rpy_is_static_xyz_and_rotvec_matches_a_single_axis_rotation():
    np.testing.assert_allclose(rpy_to_rotvec(0.3, 0.0, 0.0), [0.3, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(rpy_to_rotvec(0.0, 0.0, -0.2), [0.0, 0.0, -0.2], atol=1e-12)
    # Rz(pi/2) @ Rx(pi/2) maps x->y, y->z, z->x: a 120 degree turn about (1,1,1)/sqrt(3)
    rotvec = rpy_to_rotvec(math.pi / 2, 0.0, math.pi / 2)
    np.testing.assert_allclose(rotvec, np.full(3, 2 * math.pi / 3 / math.sqrt(3)), atol=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(50):
        r, p, y = rng.uniform(-1.2, 1.2, size=3)
        np.testing.assert_allclose(
            rotvec_to_matrix(rpy_to_rotvec(r, p, y)), rpy_to_matrix(r, p, y), atol=1e-9
        )
        m = rpy_to_matrix(r, p, y)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(m)), m, atol=1e-9)


def test_rotvec_near_pi_keeps_the_axis():
    m = rotvec_to_matrix(np.array([0.0, math.pi - 1e-9, 0.0]))
    axis_angle = rpy_to_rotvec(*_matrix_to_rpy(m))
    assert abs(abs(axis_angle[1]) - math.pi) < 1e-5


def _matrix_to_rpy(m: np.ndarray) -> tuple[float, float, float]:
    pitch = -math.asin(max(-1.0, min(1.0, m[2, 0])))
    return math.atan2(m[2, 1], m[2, 2]), pitch, math.atan2(m[1, 0], m[0, 0])


def test_widowx_sends_axis_angle_and_a_signed_gripper():
    adapter = get_embodiment("widowx_bridge").make_adapter()
    out = adapter.convert([0.01, -0.02, 0.03, 0.1, 0.0, 0.0, 0.7])
    np.testing.assert_allclose(out.env_action, [0.01, -0.02, 0.03, 0.1, 0.0, 0.0, 1.0], atol=1e-12)
    assert out.gripper_opening == 1.0 and out.frame == "base"
    np.testing.assert_allclose(out.translation, [0.01, -0.02, 0.03])  # Bridge deltas are metres already
    # Rz(90°)·Rx(90°) = 120° about (1, 1, 1)/√3, sent as axis * angle
    turn = adapter.convert([0, 0, 0, math.pi / 2, 0, math.pi / 2, 0.0])
    np.testing.assert_allclose(turn.env_action[3:6], np.full(3, 2 * math.pi / 3 / math.sqrt(3)), atol=1e-12)
    np.testing.assert_allclose(turn.rotation, rpy_to_matrix(math.pi / 2, 0, math.pi / 2))
    assert adapter.convert([0, 0, 0, 0, 0, 0, 0.5]).env_action[6] == -1.0  # strictly greater than 0.5


def test_google_robot_gripper_is_relative_and_sticky_for_ten_steps():
    adapter = get_embodiment("google_robot").make_adapter()
    grip = [1.0, 1.0, 0.0] + [0.0] * 12
    values = [adapter.convert([0, 0, 0, 0, 0, 0, g]).env_action[6] for g in grip]
    assert values[0] == 0.0 and values[1] == 0.0
    assert values[2:12] == [1.0] * 10  # close (prev 1 - current 0) held for 10 steps
    assert values[12:] == [0.0] * 3  # previous was updated when the sticky action started
    adapter.reset()
    assert adapter.convert([0, 0, 0, 0, 0, 0, 0.0]).env_action[6] == 0.0


def test_libero_warm_up_then_raw_rotation_and_inverted_gripper():
    emb = get_embodiment("franka_libero")
    adapter = emb.make_adapter()
    action = [0.1, 0.2, 0.3, 0.01, 0.02, 0.03, 0.9]
    for _ in range(emb.warmup_steps):
        np.testing.assert_allclose(adapter.convert(action).env_action, [0, 0, 0, 0, 0, 0, -1])
    out = adapter.convert(action)
    np.testing.assert_allclose(out.env_action, [0.1, 0.2, 0.3, 0.01, 0.02, 0.03, -1.0])
    # our EEDelta is in SI units: robosuite's OSC maps 1.0 to 0.05 m and 0.5 rad per step
    np.testing.assert_allclose(out.translation, [0.005, 0.01, 0.015])
    np.testing.assert_allclose(out.rotvec, [0.005, 0.01, 0.015])
    np.testing.assert_allclose(out.rotation, rotvec_to_matrix(out.rotvec))
    assert out.gripper_opening == 1.0 and out.frame == "base"
    assert emb.flip_images and emb.unnorm_keys == ("franka",)


def test_libero_warm_up_can_be_switched_off():
    adapter = get_embodiment("franka_libero").make_adapter(warmup=False)
    out = adapter.convert([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(out.env_action, [1.0, 0, 0, 0, 0, 0, 1.0])  # g <= 0.5 -> +1 = close
    np.testing.assert_allclose(out.translation, [0.05, 0.0, 0.0])
    assert out.gripper_opening == 0.0


def test_tool_frame_deltas_right_multiply_and_base_frame_deltas_translate_in_base_axes():
    pose = np.eye(4)
    pose[:3, :3] = rpy_to_matrix(0.0, 0.0, math.pi / 2)  # tool x axis = base y axis
    pose[:3, 3] = [0.5, 0.0, 0.4]
    tool = get_embodiment("franka_real").make_adapter().convert([0.1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(compose_delta(pose, tool)[:3, 3], [0.5, 0.1, 0.4], atol=1e-12)
    base = get_embodiment("widowx_bridge").make_adapter().convert([0.1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(compose_delta(pose, base)[:3, 3], [0.6, 0.0, 0.4], atol=1e-12)


def test_bad_actions_are_rejected_with_a_reason():
    adapter = get_embodiment("widowx_bridge").make_adapter()
    with pytest.raises(ValueError, match="NaN"):
        adapter.convert([0, 0, np.nan, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="expected 7"):
        adapter.convert([0, 0, 0])


def test_unnorm_key_resolution_prefers_the_embodiment_keys_and_explains_failures():
    widowx = get_embodiment("widowx_bridge")
    assert widowx.resolve_unnorm_key(["oxe_rt1", "bridge_dataset"]) == "bridge_dataset"
    assert widowx.resolve_unnorm_key(["custom"]) == "custom"
    with pytest.raises(UnnormKeyError, match="unnorm_key"):
        widowx.resolve_unnorm_key(["oxe_rt1", "franka"])
    assert set(EMBODIMENTS) == {"widowx_bridge", "google_robot", "franka_libero", "franka_real"}
    for emb in EMBODIMENTS.values():  # what the policy node stamps into every ActionChunk
        assert emb.action_dim == len(emb.dimension_names) == 7 and emb.reference_frame in ("base", "tool")
        assert emb.control_rate_hz > 0 and emb.ensemble_horizon >= 1 and emb.source
    assert get_embodiment("google_robot").ensemble_horizon == 2
    assert get_embodiment("widowx_bridge").control_rate_hz == 5.0
    with pytest.raises(KeyError, match="known"):
        get_embodiment("ur5")


@pytest.mark.parametrize("frame", ["base", "tool"])
def test_delta_between_is_the_inverse_of_compose_delta(frame):
    from internvla_core.embodiments import EEDelta, compose_delta, delta_between
    from internvla_core.rotations import make_pose, rpy_to_matrix, rpy_to_rotvec

    rng = np.random.default_rng(7)
    for _ in range(50):
        start = make_pose(rng.uniform(-0.5, 0.5, 3), rpy_to_matrix(*rng.uniform(-1.2, 1.2, 3)))
        d = np.concatenate([rng.uniform(-0.05, 0.05, 3), rng.uniform(-0.3, 0.3, 3)])
        step = EEDelta(d[:3], rpy_to_matrix(*d[3:]), rpy_to_rotvec(*d[3:]), frame, 1.0, np.zeros(7))
        target = compose_delta(start, step)
        np.testing.assert_allclose(delta_between(start, target, frame), d, atol=1e-9)
        np.testing.assert_allclose(compose_delta(start, step), target, atol=1e-12)
