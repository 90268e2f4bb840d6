"""The JointTrajectoryController emulation: replacement, stamps, interpolation, validation, hold."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_sim.controllers import JointTrajectoryControllerEmulation

J = ["a", "b"]


def jtc(**kwargs) -> JointTrajectoryControllerEmulation:
    return JointTrajectoryControllerEmulation(J, [0.0, 0.0], **kwargs)


def test_holds_its_initial_position_until_a_trajectory_arrives():
    c = jtc()
    np.testing.assert_array_equal(c.update(0.0, [0.3, 0.3]), [0.0, 0.0])
    np.testing.assert_array_equal(c.update(5.0, [0.3, 0.3]), [0.0, 0.0])


def test_positions_only_are_linear_at_constant_speed_then_stop_at_the_last_point():
    c = jtc()
    assert c.submit(J, 1.0, [0.5, 1.0], [[1.0, 2.0], [2.0, 2.0]], None, now=1.0) == ""
    c.update(1.0, [0.0, 0.0])  # first sample: the state before the trajectory is recorded now
    np.testing.assert_allclose(c.update(1.25, [0.0, 0.0]), [0.5, 1.0])
    np.testing.assert_allclose(c.setpoint_velocity, [2.0, 4.0])
    np.testing.assert_allclose(c.update(1.75, None), [1.5, 2.0])
    np.testing.assert_allclose(c.setpoint_velocity, [2.0, 0.0])
    np.testing.assert_allclose(c.update(3.0, None), [2.0, 2.0])
    np.testing.assert_array_equal(c.setpoint_velocity, [0.0, 0.0])  # abrupt stop, then hold
    assert not c.active


def test_positions_and_velocities_are_cubic_through_every_point_with_its_velocity():
    c = jtc()
    q = [[0.1, 0.0], [0.3, 0.1], [0.4, 0.1]]
    v = [[1.5, 0.5], [1.5, 0.5], [0.0, 0.0]]
    assert c.submit(J, 0.0, [0.1, 0.2, 0.3], q, v, now=0.0) == ""
    c.update(0.0, [0.0, 0.0], [1.0, 0.0])
    for t, (qi, vi) in zip([0.1, 0.2], zip(q, v)):
        np.testing.assert_allclose(c.update(t, None), qi, atol=1e-12)
        np.testing.assert_allclose(c.setpoint_velocity, vi, atol=1e-9)
    # C1 inside a segment: sampled velocity matches the derivative of sampled positions
    a = c.update(0.25 - 1e-6, None)
    va = c.setpoint_velocity.copy()
    b = c.update(0.25 + 1e-6, None)
    np.testing.assert_allclose((b - a) / 2e-6, va, rtol=1e-3)


def test_a_new_trajectory_replaces_the_old_from_the_measured_state_at_its_arrival():
    c = jtc()
    c.submit(J, 0.0, [1.0], [[1.0, 1.0]], None, now=0.0)
    c.update(0.0, [0.0, 0.0])
    c.update(0.5, [0.4, 0.4])  # setpoint 0.5; the arm lags at 0.4
    c.submit(J, 0.5, [0.5], [[-1.0, 0.0]], None, now=0.5)
    np.testing.assert_allclose(c.update(0.5, [0.4, 0.4]), [0.4, 0.4])  # starts where the arm is
    np.testing.assert_allclose(c.update(0.75, [0.0, 0.0]), [-0.3, 0.2])
    np.testing.assert_allclose(c.update(2.0, [0.0, 0.0]), [-1.0, 0.0])  # the old goal (1, 1) is gone


def test_open_loop_starts_from_the_last_setpoint_instead():
    c = jtc(open_loop=True)
    c.submit(J, 0.0, [1.0], [[1.0, 1.0]], None, now=0.0)
    c.update(0.0, [0.0, 0.0])
    c.update(0.5, [0.4, 0.4])
    c.submit(J, 0.5, [0.5], [[1.0, 1.0]], None, now=0.5)
    np.testing.assert_allclose(c.update(0.5, [0.4, 0.4]), [0.5, 0.5])


def test_stamp_zero_is_now_a_past_start_is_sampled_in_its_segment_and_a_past_end_is_rejected():
    c = jtc()
    assert c.submit(J, 0.0, [1.0], [[1.0, 0.0]], None, now=10.0) == ""  # 0 = now: ends at 11
    c.update(10.0, [0.0, 0.0])
    np.testing.assert_allclose(c.update(10.5, None), [0.5, 0.0])
    # started 1.5 s ago: the segment containing now is point 1 -> point 2
    assert c.submit(J, 9.0, [1.0, 2.0, 3.0], [[1, 1], [2, 2], [3, 3]], None, now=10.5) == ""
    np.testing.assert_allclose(c.update(10.5, [0.5, 0.0]), [1.5, 1.5])
    reason = c.submit(J, 5.0, [1.0, 2.0], [[1, 1], [2, 2]], None, now=10.5)
    assert "past" in reason and c.rejected == 1
    np.testing.assert_allclose(c.update(11.0, None), [2.0, 2.0])  # the rejected one changed nothing


@pytest.mark.parametrize(
    "names, times, positions, velocities, message",
    [
        (["a"], [0.1], [[1.0]], None, "do not match"),
        (["a", "c"], [0.1], [[1.0, 1.0]], None, "do not match"),
        (J, [], [], None, "empty"),
        (J, [0.2, 0.2], [[1, 1], [2, 2]], None, "strictly increasing"),
        (J, [0.1], [[1.0, float("nan")]], None, "finite"),
        (J, [0.1], [[1.0]], None, "position"),
        (J, [0.1, 0.2], [[1, 1], [2, 2]], [[1, 1], []], "all points"),
        (J, [0.1, 0.2], [[1, 1], [2, 2]], [[1, 1], [1, 0]], "non-zero velocity at the last point"),
    ],
)
def test_malformed_trajectories_are_rejected_with_the_reason(names, times, positions, velocities, message):
    assert message in jtc().submit(names, 0.0, times, positions, velocities, now=0.0)


def test_joint_order_is_matched_by_name_and_humble_allows_a_moving_end():
    c = jtc(allow_nonzero_velocity_at_trajectory_end=True)
    assert c.submit(["b", "a"], 0.0, [0.1], [[2.0, 1.0]], [[0.5, 0.0]], now=0.0) == ""
    c.update(0.0, [0.0, 0.0])
    np.testing.assert_allclose(c.update(0.2, None), [1.0, 2.0])


def _speeds(trajectories, period, seconds, latency, rate=500.0):
    """Setpoint speeds at the controller rate while ``trajectories(k, t)`` are sent every period."""
    c = jtc()
    speeds, k, next_send = [], 0, latency
    for i in range(int(seconds * rate)):
        t = i / rate
        if t >= next_send - 1e-12:
            stamp = k * period  # computed at the tick, delivered ``latency`` later
            times, positions, velocities = trajectories(k)
            c.submit(J, stamp, times, positions, velocities, now=t)
            k, next_send = k + 1, (k + 1) * period + latency
        c.update(t, c.setpoint, c.setpoint_velocity)  # a perfectly tracking arm
        speeds.append(float(np.linalg.norm(c.setpoint_velocity)))
    return np.array(speeds[int(rate) :])  # after the first second


def test_one_point_per_period_stops_between_commands_a_multi_point_chunk_does_not():
    period, speed = 0.1, 0.2  # rad/s along joint a

    def one_point(k):
        return [period], [[speed * period * (k + 1), 0.0]], None

    def chunk(k, rows=8):
        q = [[speed * period * (k + 1 + i), 0.0] for i in range(rows)]
        v = [[speed, 0.0]] * (rows - 1) + [[0.0, 0.0]]
        return [period * (i + 1) for i in range(rows)], q, v

    stream = _speeds(one_point, period, 3.0, latency=0.02)
    multi = _speeds(chunk, period, 3.0, latency=0.02)
    assert stream.min() < 1e-9  # stands still from each point until the next command arrives
    assert np.mean(stream < 1e-9) > 0.15
    assert multi.min() > 0.9 * speed  # the next chunk replaces the running one before it ends


class RecordingEnv:
    """The part of SimEnv that SimServos drives: joint state in, servo targets out."""

    def __init__(self, scene, fingers: float) -> None:
        from types import SimpleNamespace

        self.time, self.scene = 0.0, scene
        self.model = SimpleNamespace(
            joint=lambda name: SimpleNamespace(dofadr=[scene.arm_joints.index(name)])
        )
        self.data = SimpleNamespace(qvel=np.zeros(len(scene.arm_joints)))
        self.fingers = fingers
        self.applied: list[tuple[np.ndarray, float | None]] = []

    def arm_positions(self) -> np.ndarray:
        return np.asarray(self.scene.home, dtype=float)

    def finger_positions(self) -> np.ndarray:
        return np.array([self.fingers, self.fingers])

    def apply_joint_targets(self, target, opening) -> None:
        self.applied.append((np.asarray(target), opening))


def test_sim_servos_hold_home_and_map_each_robots_gripper_command_to_an_opening():
    from internvla_sim.controllers import SimServos
    from internvla_sim.scene import robot_scene

    franka = robot_scene("franka")
    servos = SimServos(franka, "", False, False)
    env = RecordingEnv(franka, fingers=0.04)
    servos.control(env)
    # the arm holds home; no gripper command yet, so none goes to the fingers
    assert np.allclose(env.applied[-1][0], franka.home) and env.applied[-1][1] is None
    servos.set_opening(1.7)  # out of range: clipped, never passed on as is
    servos.control(env)
    assert env.applied[-1][1] == 1.0 and servos.gripper is None

    widowx = robot_scene("widowx")
    servos = SimServos(widowx, "left_finger", False, False)
    closed, opened = widowx.finger_closed[0], widowx.finger_open[0]
    env = RecordingEnv(widowx, fingers=opened)
    servos.control(env)
    assert env.applied[-1][1] == pytest.approx(1.0)  # the gripper JTC holds its initial (open) position
    reason = servos.gripper.submit(["left_finger"], 0.0, [0.1], [[closed]], [[]], now=0.0)
    assert reason == ""
    env.time = 0.2
    servos.control(env)
    assert env.applied[-1][1] == pytest.approx(0.0)  # the finger joint at its closed end is opening 0
