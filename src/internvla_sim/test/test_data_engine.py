"""The data engine: episodes of commanded actions with grounding labels, deterministic, parallel, resumable."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("internvla_learning")

from internvla_learning.episode import load_episode

from internvla_core.embodiments.base import delta_between
from internvla_core.kinematics import IKSolver
from internvla_core.robot_assets import robot_description
from internvla_sim import task_family as tf
from internvla_sim.data_engine import (
    GENERATOR,
    FailedEpisode,
    GeneratorMismatchError,
    done_seeds,
    episode_path,
    generate,
    generate_episode,
    main,
)
from internvla_sim.env import SimEnv

SIZE = (64, 64)


def _feasible_seed(robot, skill):
    for seed in range(100):
        try:
            tf.sample_task(robot, seed, [skill])
            return seed
        except tf.InfeasibleTaskError:
            continue
    raise AssertionError("no feasible draw")


@pytest.mark.parametrize(
    ("robot", "skill", "embodiment", "frame", "fps"),
    [
        ("franka", "put_on", "franka_real", "tool", 10.0),
        ("widowx", "push_forward", "widowx_bridge", "base", 5.0),
    ],
)
def test_actions_are_the_commanded_targets_in_the_embodiment_frame(robot, skill, embodiment, frame, fps):
    seed = _feasible_seed(robot, skill)
    episode = generate_episode(robot, seed, SIZE, templates=[skill])
    assert not isinstance(episode, FailedEpisode), episode
    episode.validate()
    assert (episode.embodiment, episode.reference_frame, episode.fps) == (embodiment, frame, fps)
    assert episode.task_template == episode.metadata["template"] and episode.metadata["skill"] == skill
    assert episode.images["third_person"].shape == (episode.length, SIZE[1], SIZE[0], 3)
    assert np.allclose(np.diff(episode.timestamps), 1.0 / fps)
    # action_ee_delta[t] = delta_between(fk(q_cmd[t-1]), fk(q_cmd[t])), t = 0 from the measured start
    ik = IKSolver.from_description(robot_description(robot))
    n = len(episode.joint_names)
    previous = ik.fk(episode.state_joint[0].astype(np.float64))
    for t in range(episode.length):
        target = ik.fk(episode.action_joint[t, :n].astype(np.float64))
        expected = delta_between(previous, target, frame)
        np.testing.assert_allclose(episode.action_ee_delta[t, :6], expected, atol=2e-5, err_msg=f"frame {t}")
        previous = target
    assert np.array_equal(episode.action_ee_delta[:, 6], episode.action_joint[:, n])
    assert set(np.unique(episode.action_joint[:, n])) <= {0.0, 1.0}
    if skill == "put_on":
        assert set(np.unique(episode.action_joint[:, n])) == {0.0, 1.0}
    # observation t precedes command t: frame 0 is the state right after reset, before any command
    env = SimEnv(tf.sample_task(robot, seed, [skill]), seed, 1.0 / fps, SIZE[0], SIZE[1], False, robot)
    assert np.allclose(episode.state_joint[0], env.arm_positions(), atol=1e-6)
    assert np.array_equal(episode.images["third_person"][0], env.render())
    env.close()
    g = episode.grounding
    assert g.trace.shape == (episode.length, 8, 2) and len(g.box_answer) == episode.length
    assert np.all(g.target_visible[:3] > 0.3) and json.loads(g.box_answer[0])[0]["bbox_2d"]


def test_same_seed_same_episode():
    seed = _feasible_seed("widowx", "pick")
    a = generate_episode("widowx", seed, SIZE, templates=["pick"])
    b = generate_episode("widowx", seed, SIZE, templates=["pick"])
    assert a.instruction == b.instruction and a.metadata == b.metadata
    for name in ("state_joint", "state_ee", "action_ee_delta", "action_joint", "timestamps"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.images["third_person"], b.images["third_person"])
    assert np.array_equal(a.grounding.trace, b.grounding.trace, equal_nan=True)


def test_infeasible_draws_are_failures_not_episodes():
    seed = next(s for s in range(200) if _infeasible("widowx", s))
    failure = generate_episode("widowx", seed, SIZE)
    assert isinstance(failure, FailedEpisode) and failure.reason == "infeasible_layout"


def _infeasible(robot, seed):
    try:
        tf.sample_task(robot, seed)
    except tf.InfeasibleTaskError:
        return True
    return False


def test_parallel_generation_writes_episodes_and_failures_and_resumes(tmp_path):
    robot = "widowx"
    bad = next(s for s in range(200) if _infeasible(robot, s))
    start = max(0, bad - 1)
    stats = generate(tmp_path, robot, 3, seed_start=start, workers=2, image_size=SIZE, progress=False)
    seeds = set(range(start, start + 3))
    written = {s for s in seeds if episode_path(tmp_path, robot, s).exists()}
    failures = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert bad in {f["seed"] for f in failures} and bad not in written
    assert written | {f["seed"] for f in failures} == seeds and stats["written"] == len(written) >= 1
    assert stats["skipped"] == 0 and sum(stats["failed"].values()) == len(failures)
    assert done_seeds(tmp_path, robot) == seeds
    episode = load_episode(episode_path(tmp_path, robot, min(written)))
    assert episode.seed == min(written) and episode.robot == robot and episode.grounding is not None
    mtime = episode_path(tmp_path, robot, min(written)).stat().st_mtime_ns
    again = generate(tmp_path, robot, 4, seed_start=start, workers=1, image_size=SIZE, progress=False)
    assert again["skipped"] == 3 and again["written"] + sum(again["failed"].values()) == 1
    assert episode_path(tmp_path, robot, min(written)).stat().st_mtime_ns == mtime  # not redone
    assert len((tmp_path / "failures.jsonl").read_text().splitlines()) == len(failures) + sum(
        again["failed"].values()
    )


def test_a_staging_directory_refuses_to_resume_with_another_expert_setting(tmp_path):
    generate(tmp_path, "franka", 0, image_size=SIZE, wrist=True, templates=["push_blue_left"], progress=False)
    generate(tmp_path, "franka", 0, image_size=SIZE, wrist=True, templates=["push_blue_left"], progress=False)
    with pytest.raises(GeneratorMismatchError, match=r"perturb: 0\.0 there, 0\.01 now") as refused:
        generate(tmp_path, "franka", 0, image_size=SIZE, wrist=True, templates=["push_blue_left"],
                 perturb=0.01, progress=False)  # fmt: skip
    assert "perturb_descent" not in str(refused.value) and "another --out" in str(refused.value)
    generate(tmp_path, "widowx", 0, image_size=SIZE, progress=False)  # another robot keeps its own record
    recorded = json.loads((tmp_path / GENERATOR).read_text())
    assert recorded["franka"]["templates"] == ["push_blue_left"] and recorded["franka"]["perturb"] == 0.0
    assert recorded["widowx"]["wrist"] is False and recorded["franka"]["expert_version"]


def test_a_directory_from_before_the_record_is_accepted_and_gets_it(tmp_path):
    (tmp_path / "episodes").mkdir()
    (tmp_path / "episodes" / "franka_seed_0000000.npz").write_bytes(b"")  # an episode of an older engine
    stats = generate(tmp_path, "franka", 1, image_size=SIZE, progress=False)
    assert stats["skipped"] == 1 and json.loads((tmp_path / GENERATOR).read_text())["franka"]["perturb"] == 0


def test_the_cli_says_what_differs_and_exits_2_instead_of_mixing(tmp_path, capsys):
    base = ["--robot", "franka", "--episodes", "0", "--out", str(tmp_path), "--image-size", "64"]
    assert main(base) == 0
    assert main([*base, "--wrist"]) == 2
    assert "wrist: False there, True now" in capsys.readouterr().err


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "internvla_sim.data_engine", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--episodes" in out.stdout and "--workers" in out.stdout


def test_perturbed_expert_records_the_correction_from_the_target_actually_sent():
    """DART-style data: the arm is sent the expert's target plus a drifting offset, and the recorded action
    is the delta from the target actually sent to the one the expert wanted (a correction), so that a
    policy executing it from its own last command goes where the expert would."""
    from internvla_sim.expert import ScriptedExpert

    seed = 3
    task = tf.named_task("pick_green", "franka", seed)
    env = SimEnv(task, seed, 0.1, SIZE[0], SIZE[1], False, "franka")
    sent = []
    apply = env.apply_joint_targets

    def record(q=None, gripper_opening=None):
        sent.append(np.array(q, dtype=np.float64))
        apply(q, gripper_opening)

    env.apply_joint_targets = record
    start = env.arm_positions().copy()
    expert = ScriptedExpert(env, frame="tool", perturb=0.02, rng=np.random.default_rng(seed))
    result = expert.run()
    env.close()
    assert result.success
    ik = IKSolver.from_description(robot_description("panda"))
    previous, shifts = ik.fk(start), []
    for t, action in enumerate(result.actions):
        wanted = ik.fk(result.joint_commands[t][:7])
        np.testing.assert_allclose(action[:6], delta_between(previous, wanted, "tool"), atol=2e-5)
        previous = ik.fk(sent[t])
        shifts.append((np.linalg.norm(previous[:3, 3] - wanted[:3, 3]), action[6]))
    shifts = np.array(shifts)
    assert shifts[:, 0].max() > 0.01  # the arm was really sent off the expert's path
    assert shifts[shifts[:, 1] < 0.5, 0].max() < 1e-4  # never while the gripper is closed (grasp, lift)


def _perturbed_descent_run(task_name: str, seed: int = 3):
    """The expert on a named Franka task with a perturbed descent (``perturb`` 1 cm): the target's start
    position, the (joint targets, gripper opening) actually sent each step, the expert's result, and the
    Panda's IK solver and TCP offset to read the sent and the wanted poses."""
    from internvla_sim.expert import ScriptedExpert

    task = tf.named_task(task_name, "franka", seed)
    env = SimEnv(task, seed, 0.1, SIZE[0], SIZE[1], False, "franka")
    target = env.object_positions()[task.target].copy()
    tcp_offset = np.array(env.robot.tcp_offset)
    sent = []
    apply = env.apply_joint_targets

    def record(q=None, gripper_opening=None):
        sent.append((np.array(q, dtype=np.float64), gripper_opening))
        apply(q, gripper_opening)

    env.apply_joint_targets = record
    expert = ScriptedExpert(
        env, frame="tool", perturb=0.01, rng=np.random.default_rng(seed), perturb_descent=True
    )
    result = expert.run()
    env.close()
    return target, sent, result, IKSolver.from_description(robot_description("panda")), tcp_offset


def test_perturbed_descent_sends_the_arm_sideways_on_the_way_down_and_still_grasps():
    """With ``perturb_descent`` the descent onto the grasp is sent off the expert's vertical line (the
    states a policy arriving 1-2 cm off reaches), the recorded actions lead back to it, and the offset has
    faded out before the fingers close: the expert still lifts the block."""
    from internvla_sim.expert import APPROACH, GRASP_HEIGHT

    block, sent, result, ik, tcp_offset = _perturbed_descent_run("pick_green")
    assert result.success
    descent_offsets = []
    for (q_sent, opening), command in zip(sent, result.joint_commands, strict=True):
        if opening < 0.5:
            break  # the grasp: the descent is over
        hand_sent, hand_wanted = ik.fk(q_sent), ik.fk(command[:7])
        tcp_wanted = hand_wanted[:3, 3] + hand_wanted[:3, :3] @ tcp_offset
        height = tcp_wanted[2] - block[2] - GRASP_HEIGHT
        above_block = np.linalg.norm(tcp_wanted[:2] - block[:2]) < 0.01
        if above_block and height < APPROACH - 0.01:  # the expert's vertical descent
            sideways = np.linalg.norm(hand_sent[:2, 3] - hand_wanted[:2, 3])
            descent_offsets.append((height, sideways))
    descent_offsets = np.array(descent_offsets)
    assert descent_offsets[:, 1].max() > 0.005  # sent sideways on the way down
    # faded out at the grasp (the fade follows the measured hand, which lags its target: a few mm at most)
    assert descent_offsets[descent_offsets[:, 0] < 0.005, 1].max() < 0.002


def test_perturbed_descent_also_sends_a_push_sideways_on_the_way_down_and_still_pushes():
    """``perturb_descent`` perturbs the descent to the start of a push as it does a grasp's: sent sideways
    on the way down, faded out at the table, and the push still succeeds; the stroke stays clean."""
    _, sent, result, ik, tcp_offset = _perturbed_descent_run("push_blue_left")
    assert result.success
    wanted = []
    for (q_sent, _), command in zip(sent, result.joint_commands, strict=True):
        hand_sent, hand_wanted = ik.fk(q_sent), ik.fk(command[:7])
        tcp = hand_wanted[:3, 3] + hand_wanted[:3, :3] @ tcp_offset
        wanted.append((tcp, np.linalg.norm(hand_sent[:2, 3] - hand_wanted[:2, 3])))
    tcps = np.array([w[0] for w in wanted])
    sideways = np.array([w[1] for w in wanted])
    stroke = int(np.argmax(np.diff(tcps[:, 1]) > 0.01)) + 1  # the first step of the push (+y, ~1.7 cm/step)
    start = tcps[stroke - 1]  # where the expert starts pushing
    before = np.arange(stroke)
    # the descent to the push start: below the travel's waypoint (11.5 cm above the start, where the
    # travel's own perturbation has faded) and above the last 3 cm
    height = tcps[before, 2] - start[2]
    descent = before[(height > 0.03) & (height < 0.09)]
    assert len(descent) >= 2 and sideways[descent].max() > 0.005  # sent sideways on the way down
    low = np.flatnonzero(np.abs(tcps[:, 2] - start[2]) < 0.005)
    assert sideways[low[low >= stroke - 1]].max() < 0.002  # faded out at the table; the stroke is clean


def test_no_perturbation_is_the_plain_expert():
    a = generate_episode("franka", 5, SIZE, templates=["pick_green"])
    b = generate_episode("franka", 5, SIZE, templates=["pick_green"], perturb=0.0)
    assert np.array_equal(a.action_ee_delta, b.action_ee_delta) and a.metadata["perturb"] == 0.0


def _hold_after_grasp(grasp_rise: float, seed: int = 0) -> tuple[bool, np.ndarray, list[float]]:
    """Run the pick_green expert; return its success, the actions from the close on, and the measured
    finger opening before each of those actions."""
    from internvla_sim.expert import ScriptedExpert

    task = tf.named_task("pick_green", "franka", seed)
    env = SimEnv(task, seed, 0.1, SIZE[0], SIZE[1], False, "franka")
    fingers: list[float] = []
    expert = ScriptedExpert(
        env, observe=lambda e: fingers.append(e.finger_opening()), frame="tool", grasp_rise=grasp_rise
    )
    result = expert.run()
    env.close()
    actions = np.array(result.actions)
    close = int(np.argmax(actions[:, 6] < 0.5))
    return result.success, actions[close:], fingers[close:]


def test_the_default_expert_holds_still_after_a_grasp():
    """The old expert (no rise) records 4 still closed-gripper steps after the fingers stop: the picture a
    policy without memory cannot leave (TRAINING.md, eighth round). The rise option exists for this."""
    success, after_close, _ = _hold_after_grasp(0.0)
    assert success
    still = np.linalg.norm(after_close[1:8, :6], axis=1) < 1e-4
    assert still.sum() >= 4


def test_grasp_rise_turns_the_hold_after_a_grasp_into_the_start_of_the_lift():
    """With ``grasp_rise`` the expert holds still only while the fingers close, then each step of the
    hold rises k * grasp_rise (tool frame: -z is up), so no two steps of the hold are the same picture with
    different labels, and the block still comes up."""
    rise = 0.003
    success, after_close, fingers = _hold_after_grasp(rise)
    assert success
    assert np.all(after_close[:12, 6] == 0.0)  # the gripper stays closed through hold and lift
    moving = np.linalg.norm(after_close[1:6, :6], axis=1) > 1e-3
    first_rise = 1 + int(np.argmax(moving))
    # still only while the fingers were still closing, rising from the first step after they came to rest
    assert all(abs(fingers[t] - fingers[t - 1]) >= 0.05 for t in range(1, first_rise))
    assert abs(fingers[first_rise] - fingers[first_rise - 1]) < 0.05
    np.testing.assert_allclose(
        -after_close[first_rise : first_rise + 3, 2], [rise, 2 * rise, 3 * rise], atol=2e-4
    )
    # no still step from the first rise into the lift
    assert np.all(np.linalg.norm(after_close[first_rise:12, :6], axis=1) > 1e-3)


def test_a_negative_grasp_rise_is_refused():
    from internvla_sim.expert import ScriptedExpert

    task = tf.named_task("pick_green", "franka", 0)
    env = SimEnv(task, 0, 0.1, SIZE[0], SIZE[1], False, "franka")
    try:
        with pytest.raises(ValueError, match="grasp_rise"):
            ScriptedExpert(env, frame="tool", grasp_rise=-0.001)
    finally:
        env.close()


def test_generate_episode_passes_grasp_rise_to_the_expert_and_records_it():
    still = generate_episode("franka", 5, SIZE, templates=["pick_green"])
    rising = generate_episode("franka", 5, SIZE, templates=["pick_green"], grasp_rise=0.003)
    assert still.metadata["grasp_rise"] == 0.0 and rising.metadata["grasp_rise"] == 0.003
    assert not np.array_equal(still.action_ee_delta, rising.action_ee_delta)


def test_a_grasp_miss_episode_starts_with_the_empty_gripper_beside_the_block_and_recovers():
    """``grasp_miss``: the missed grasp is not recorded; the first frame shows the fingers shut on nothing
    3.5-4.5 cm beside the block, the first label reopens them, and the recorded recovery lifts the block."""
    seed = 4
    episode = generate_episode("franka", seed, SIZE, templates=["pick_green"], grasp_miss=True)
    clean = generate_episode("franka", seed, SIZE, templates=["pick_green"])
    assert not isinstance(episode, FailedEpisode), episode
    miss = episode.metadata["grasp_miss"]
    assert 0.035 <= np.hypot(*miss["offset"]) <= 0.045 and 0.0 <= miss["rise"] <= 0.08
    assert episode.state_ee[0, 6] < 0.3  # shut on nothing (0.49 on the block)
    assert episode.action_ee_delta[0, 6] == 1.0  # the first label opens the gripper
    assert np.all(clean.action_ee_delta[:3, 6] == 1.0) and clean.state_ee[0, 6] > 0.9  # a clean start: open
    # the recovery grasps again (a close after the reopening) and the episode succeeded (only successes
    # are returned as episodes)
    gripper = episode.action_ee_delta[:, 6]
    assert gripper[0] == 1.0 and np.any(gripper[1:] == 0.0)
    assert episode.success and clean.metadata["grasp_miss"] is None


def test_a_grasp_miss_needs_a_grasp():
    """A skill without a grasp (push) has no miss to record: the draw is reported as failed, not written."""
    seed = _feasible_seed("franka", "push_left")
    result = generate_episode("franka", seed, SIZE, templates=["push_left"], grasp_miss=True)
    assert isinstance(result, FailedEpisode) and result.detail == "no grasp to miss"


def test_expert_only_runs_the_named_tasks_the_engine_records():
    """``--expert-only --templates pick_green`` measured nothing before (named tasks are not family
    templates): the expert's check and the recording draw their tasks the same way."""
    from internvla_sim.data_engine import expert_success, task_of

    assert task_of("widowx", 3, ["push_blue_left"]).skill == "push_left"
    stats = expert_success("franka", range(2), ["pick_green"])
    assert stats == {"pick": [2, 2]}
    with pytest.raises(ValueError, match="cannot be mixed"):
        task_of("franka", 0, ["pick_green", "pick/0"])
