"""Grounding ground truth projected from the simulator: boxes, occlusion, points, traces, answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("mujoco")

from internvla_core.grounding import parse_grounding_text, to_source_pixels
from internvla_sim import task_family as tf
from internvla_sim.env import SimEnv
from internvla_sim.ground_truth import GroundTruthRecorder, project, resample_path
from internvla_sim.scene import Primitive, SceneObject

SIZE = (96, 80)


def _task(robot, skill, start=0):
    for seed in range(start, start + 100):
        try:
            return tf.sample_task(robot, seed, [skill])
        except tf.InfeasibleTaskError:
            continue
    raise AssertionError(f"no feasible {skill} draw")


def _env(task, robot="franka"):
    return SimEnv(task, seed=0, width=SIZE[0], height=SIZE[1], wrist=False, robot=robot)


@pytest.mark.parametrize("robot", ["franka", "widowx"])
def test_boxes_contain_the_projected_centres_of_target_and_container(robot):
    env = _env(_task(robot, "put_in"), robot)
    truth = GroundTruthRecorder(env)
    truth.observe()
    k, pose = env.camera_intrinsics(), env.camera_pose()
    positions = env.object_positions()
    for name, box, visible in (
        (env.task.target, truth.target_box[0], truth.target_visible[0]),
        (env.task.container, truth.container_box[0], truth.container_visible[0]),
    ):
        centre = positions[name].copy()
        centre[2] = max(centre[2], 0.004)  # the container's origin sits on the table: use its floor
        u, v = project(centre, k, pose)[0]
        x1, y1, x2, y2 = box
        assert x1 <= u <= x2 and y1 <= v <= y2, (name, box, (u, v))
        assert 0.6 < visible <= 1.0, (name, visible)
        assert 0 <= x1 < x2 <= SIZE[0] and 0 <= y1 < y2 <= SIZE[1]
    # the box is the segmentation's extent: pixels of the target's geoms are inside it, none outside
    seg = env.render(segmentation=True)
    rows, cols = np.nonzero(np.isin(seg, env.body_geoms(env.task.target)))
    x1, y1, x2, y2 = truth.target_box[0]
    assert cols.min() == x1 and cols.max() + 1 == x2 and rows.min() == y1 and rows.max() + 1 == y2
    env.close()


def test_a_target_hidden_behind_an_occluder_or_out_of_view_is_not_visible():
    task = _task("franka", "pick")
    env = _env(task)
    target = env.object_positions()[task.target]
    camera = env.camera_pose()[:3, 3]
    wall_at = target + 0.25 * (camera - target)  # a 12 cm static cube on the line of sight
    occluder = SceneObject("occluder", (Primitive("box", (0.06, 0.06, 0.06)),), (0.4, 0.4, 0.4, 1.0),
                           tuple(wall_at), movable=False)  # fmt: skip
    env.close()
    hidden = _env(dataclasses.replace(task, objects=(*task.objects, occluder)))
    truth = GroundTruthRecorder(hidden)
    truth.observe()
    assert truth.target_visible[0] < 0.05
    u, v = project(target, hidden.camera_intrinsics(), hidden.camera_pose())[0]
    x1, y1, x2, y2 = truth.target_box[0]  # hidden but in view: the silhouette's box
    assert x1 <= u <= x2 and y1 <= v <= y2
    # teleport the target far behind the camera's field of view: no box at all
    adr = hidden.model.joint(f"{task.target}_joint").qposadr[0]
    hidden.data.qpos[adr : adr + 3] = [0.5, 3.0, 0.02]
    hidden.mujoco.mj_forward(hidden.model, hidden.data)
    truth.observe()
    assert truth.target_visible[1] == 0.0 and np.all(np.isnan(truth.target_box[1]))
    labels = truth.labels()
    assert labels.box_answer[1] == "[]" and labels.box_answer[0] != "[]"
    hidden.close()


def test_trace_starts_at_the_tcp_and_answers_parse_back_to_the_labels():
    env = _env(_task("franka", "put_on"))
    truth = GroundTruthRecorder(env)
    tcps = []
    q = env.arm_positions()
    for step in range(12):
        truth.observe()
        tcps.append(env.tcp_position())
        env.apply_joint_targets(q + [0.04 * step, 0, 0, 0.03 * step, 0, 0, 0], 1.0)
        env.step()
    labels = truth.labels()
    k, pose = env.camera_intrinsics(), env.camera_pose()
    tcp_px = project(np.array(tcps), k, pose)
    assert labels.trace.shape == (12, 8, 2)
    for t in (0, 5, 11):
        assert np.linalg.norm(labels.trace[t, 0] - tcp_px[t]) < 1e-3  # starts at the current TCP
        assert np.linalg.norm(labels.trace[t, -1] - tcp_px[-1]) < 1e-3  # ends where the episode ends
    assert np.linalg.norm(labels.trace[0, 0] - labels.trace[0, -1]) > 5  # the arm moved in the image
    # grasp point = the target's centre; place point = the container's floor centre
    assert np.allclose(
        labels.grasp_point[0], project(env.object_positions()[env.task.target], k, pose)[0], atol=1e-3
    )
    assert np.allclose(labels.place_point[3], project(np.array(env.task.place_xyz), k, pose)[0], atol=1e-3)
    # the answers are what internvla_core.grounding parses back, to within the integer rounding
    for t in (0, 11):
        boxes, _, _ = to_source_pixels(parse_grounding_text(labels.box_answer[t], "box"), SIZE, SIZE)
        assert np.allclose(
            [boxes[0].x1, boxes[0].y1, boxes[0].x2, boxes[0].y2], labels.target_box[t], atol=0.5
        )
        _, points, _ = to_source_pixels(parse_grounding_text(labels.point_answer[t], "point"), SIZE, SIZE)
        assert np.allclose([points[0].u, points[0].v], labels.grasp_point[t], atol=0.5)
        _, _, traces = to_source_pixels(parse_grounding_text(labels.trace_answer[t], "trace"), SIZE, SIZE)
        assert np.allclose(traces[0].points, np.clip(labels.trace[t], 0, SIZE), atol=0.5)
        assert traces[0].label == env.task.instruction
    env.close()


def test_resample_path_spaces_points_evenly_along_the_polyline():
    path = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    out = resample_path(path, 5)
    assert np.allclose(out, [[0, 0], [5, 0], [10, 0], [10, 5], [10, 10]])
    assert np.allclose(resample_path(path[:1], 3), [[0, 0]] * 3)


def test_the_franka_wrist_camera_sees_the_table_and_holds_the_grasped_block_between_the_fingers():
    """The wrist view's labels (data engine, Episode.view_labels) and the camera they come from: at the
    start it looks down on the table with the target in view; at the grasp (the expert's first closing
    command) the TCP, which projects between the fingertips at the top of the image, lies on the target,
    centred left to right."""
    from internvla_sim.data_engine import generate_episode

    ep = generate_episode("franka", 3, (96, 96), True, ["pick_green"])
    view = ep.view_labels["wrist"]
    assert set(ep.view_labels) == {"wrist"} and len(view.target_box) == ep.length
    assert view.target_visible[0] > 0.9  # the block is seen from the home pose (the old camera saw the sky)
    grasp = int(np.argmax(ep.action_ee_delta[:, 6] < 0.5))  # gripper: 1 open, 0 close
    x1, y1, x2, y2 = view.target_box[grasp]
    u, v = view.gripper_point[grasp]
    assert view.target_visible[grasp] > 0.5 and x1 < u < x2 and y1 < v < y2, (view.target_box[grasp], u, v)
    assert abs(u - 48) < 2 and v < 48  # the TCP: on the camera's centre line, in the upper half
    assert abs(0.5 * (x1 + x2) - 48) < 6  # the block is between the fingers
