"""The procedural task family: templates, seeded draws, layouts, named members, geometric success checks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from internvla_sim import task_family as tf
from internvla_sim.env import SimEnv
from internvla_sim.expert import ScriptedExpert
from internvla_sim.scene import robot_scene
from internvla_sim.tasks import TASKS, random_layout

ROBOTS = ["franka", "widowx"]


def test_at_least_50_distinct_templates_and_each_renders_an_instruction():
    templates = list(tf.TEMPLATES.values())
    assert len({(t.skill, t.text) for t in templates}) >= 50
    assert {t.skill for t in templates} == set(tf.SKILLS)
    for t in templates:
        text = t.render("red block", "bowl", "blue cube")
        assert text.strip() and "{" not in text and "red block" in text, t
        if t.skill in ("put_on", "put_in"):
            assert "bowl" in text
        if t.skill == "move_next_to":
            assert "blue cube" in text
    for name, t in tf.NAMED_TEMPLATES.items():
        assert t.text == TASKS[name].instruction and t.skill in tf.SKILLS


@pytest.mark.parametrize("robot", ROBOTS)
def test_a_draw_is_determined_by_robot_and_seed(robot):
    def draw(seed):
        try:
            task = tf.sample_task(robot, seed)
        except tf.InfeasibleTaskError as error:
            return str(error)
        return task.instruction, task.metadata

    assert draw(5) == draw(5)
    draws = [draw(s) for s in range(12)]
    assert len({str(d) for d in draws}) == 12  # different seeds, different tasks


@pytest.mark.parametrize("robot", ROBOTS)
def test_layouts_are_inside_the_reach_and_do_not_overlap_and_names_are_unambiguous(robot):
    scene = robot_scene(robot)
    skills = set()
    for seed in range(40):
        try:
            task = tf.sample_task(robot, seed)
        except tf.InfeasibleTaskError:
            continue
        skills.add(task.skill)
        objects = task.objects
        for i, a in enumerate(objects):
            assert scene.layout_x[0] <= a.pos[0] <= scene.layout_x[1]
            assert scene.layout_y[0] <= a.pos[1] <= scene.layout_y[1]
            for b in objects[i + 1 :]:
                gap = np.linalg.norm(np.subtract(a.pos[:2], b.pos[:2]))
                assert gap > tf.footprint(a) + tf.footprint(b), (seed, a.name, b.name)
        words = [task.descriptions[o.name] for o in objects]
        assert len(set(words)) == len(words), words
        assert task.descriptions[task.target] in task.instruction
        if task.skill in tf.GRASP_SKILLS:
            assert task.object(task.target).primitives[0].kind in tf.GRASPABLE_SHAPES[robot]
    assert skills >= {"pick", "put_on", "put_in", "move_next_to"}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_named_tasks_are_family_members_with_their_instructions_and_seeded_layouts(name):
    env = SimEnv(name, seed=7, width=64, height=48, wrist=False)
    assert env.task.named and env.task.name == name
    assert env.task.instruction == TASKS[name].instruction
    assert env.object_names == ["plate", "red_block", "green_block", "blue_block"]
    scene = robot_scene("franka")
    layout = random_layout(np.random.default_rng(7), scene.layout_x, scene.layout_y)
    for obj, xy in layout.items():
        assert np.allclose(env.object_positions()[obj][:2], xy, atol=5e-3)
    env.reset(seed=8)  # same scene, new layout
    assert not np.allclose(env.object_positions()["plate"][:2], layout["plate"])


def _positions(task, moves=None):
    now = {o.name: np.array(o.pos, dtype=float) for o in task.objects}
    start = {k: v.copy() for k, v in now.items()}
    for name, xyz in (moves or {}).items():
        now[name] = np.asarray(xyz, dtype=float)
    return now, start


def _task(robot, skill):
    for seed in range(100):
        try:
            return tf.sample_task(robot, seed, [skill])
        except tf.InfeasibleTaskError:
            continue
    raise AssertionError(f"no feasible {skill} draw")


@pytest.mark.parametrize("robot", ROBOTS)
def test_success_checks_are_geometric(robot):
    pick = _task(robot, "pick")
    target = np.array(pick.object(pick.target).pos)
    assert not pick.success(*_positions(pick))
    assert not pick.success(*_positions(pick, {pick.target: target + [0, 0, 0.03]}))
    assert pick.success(*_positions(pick, {pick.target: target + [0, 0, 0.1]}))

    for skill in ("put_on", "put_in"):
        put = _task(robot, skill)
        at = np.array(put.place_xyz)
        assert not put.success(*_positions(put))
        assert put.success(*_positions(put, {put.target: at}))
        assert not put.success(*_positions(put, {put.target: at + [0, 0, 0.1]}))  # still held above it
        assert not put.success(*_positions(put, {put.target: at + [0.12, 0, 0]}))  # beside it

    for skill, (dx, dy) in tf.PUSH_DIRECTIONS.items():
        push = _task(robot, skill)
        start = np.array(push.object(push.target).pos)
        assert push.success(*_positions(push, {push.target: start + [0.1 * dx, 0.1 * dy, 0]}))
        assert not push.success(*_positions(push, {push.target: start - [0.1 * dx, 0.1 * dy, 0]}))
        assert not push.success(*_positions(push, {push.target: start + [0.1 * dx, 0.1 * dy, 0.1]}))

    near = _task(robot, "move_next_to")
    assert not near.success(*_positions(near))
    assert near.success(*_positions(near, {near.target: np.array(near.place_xyz)}))
    far = np.array(near.object(near.container).pos) + [0.2, 0, 0]
    assert not near.success(*_positions(near, {near.target: far}))


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("skill", ["put_in", "move_next_to", "push_left"])
def test_the_expert_solves_family_tasks_and_doing_nothing_does_not(robot, skill):
    dt = 0.1 if robot == "franka" else 0.2  # the deployment rates
    task = _task(robot, skill)
    env = SimEnv(task, seed=0, control_dt=dt, width=64, height=48, wrist=False, robot=robot)
    for _ in range(15):
        env.step()
    assert not env.success()
    env.reset(seed=0)
    episode = ScriptedExpert(env).run()
    assert episode.success, (robot, task.instruction)
    assert len(episode.actions) == len(episode.joint_commands) == episode.steps


def test_family_scene_carries_the_drawn_look_and_objects():
    task = _task("franka", "put_in")
    env = SimEnv(task, seed=0, width=64, height=48, wrist=False)
    assert set(env.object_names) == {o.name for o in task.objects}
    table = env.model.geom_rgba[env.body_geoms("table")[0]]
    assert np.allclose(table, task.look.table_rgba)
    cam = env.model.camera("third_person")
    assert np.allclose(env.model.cam_fovy[cam.id], task.look.camera_fovy)
    r, g, b, _ = task.look.table_rgba
    assert r >= g >= b and r - b <= 1.5 * tf.TABLE_WARMTH_RANGE[1] + 1e-9  # greys to warm woods
    assert tf.TABLE_LIGHTNESS_RANGE[0] <= g <= tf.TABLE_LIGHTNESS_RANGE[1] + tf.TABLE_WARMTH_RANGE[1] / 3
