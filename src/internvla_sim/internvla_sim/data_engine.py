"""Data engine: scripted-expert episodes of the procedural task family, with grounding labels, no ROS.

``generate_episode(robot, seed)`` draws the family task of (robot, seed), runs the scripted expert at the
robot's deployment rate (Franka ``franka_real`` 10 Hz, tool frame; WidowX ``widowx_bridge`` 5 Hz, base
frame) and returns an ``internvla_learning.episode.Episode``: per frame the third-person image (and the
wrist image) and the measured state BEFORE the frame's command, the commanded actions (see
:mod:`internvla_sim.expert`) and the grounding ground truth (:mod:`internvla_sim.ground_truth`; with the
wrist camera also its own target box and TCP point per frame, ``Episode.view_labels``). Failed
or infeasible draws come back as :class:`FailedEpisode` with a reason and are never written.

``generate(out_dir, robot, episodes, seed_start, workers)`` runs seeds [seed_start, seed_start +
episodes) in worker processes (spawn context: MuJoCo / EGL per process), writes
``<out_dir>/episodes/<robot>_seed_<seed:07d>.npz`` per success and a line per failure in
``<out_dir>/failures.jsonl``; a rerun skips seeds already written or failed. ``<out_dir>/generator.json``
records, per robot, what made the episodes (the expert's version, the image size, the cameras, the tasks
and the perturbations): a rerun with other settings is refused, naming what differs, so that a directory
never mixes two kinds of demonstration.

    python -m internvla_sim.data_engine --robot franka --episodes 100 --workers 2 --out /data/staging
    python -m internvla_sim.data_engine --robot widowx --episodes 20 --expert-only   # success per skill
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .expert import EMBODIMENTS, EXPERT_VERSION

FAILURES = "failures.jsonl"
GENERATOR = "generator.json"


@dataclass
class FailedEpisode:
    robot: str
    seed: int
    reason: str  # "infeasible_layout" | "expert_failed" | "error"
    detail: str = ""
    template: str = ""
    skill: str = ""
    steps: int = 0


def episode_path(out_dir: str | Path, robot: str, seed: int) -> Path:
    return Path(out_dir) / "episodes" / f"{robot}_seed_{seed:07d}.npz"


def measured_state_ee(env) -> np.ndarray:
    """The state a frame records: the measured hand position and rpy (base frame) and finger opening."""
    from internvla_core.rotations import matrix_to_rpy

    hand = env.hand_pose()
    return np.array([*hand[:3, 3], *matrix_to_rpy(hand[:3, :3]), env.finger_opening()])


def task_of(robot: str, seed: int, templates: list[str] | None = None):
    """The task of (robot, seed): a family draw restricted to ``templates`` (template ids or skills), or,
    when ``templates`` names named tasks (red_on_plate, pick_green, push_blue_left), that task's fixed scene
    with the seed's layout; several named tasks: the seed picks one (seed % count), so a seed range covers
    them evenly. Raises ``InfeasibleTaskError`` for a layout the robot cannot do."""
    from .task_family import named_task, sample_task
    from .tasks import TASKS

    named = [t for t in templates or () if t in TASKS]
    if named and len(named) != len(templates):
        raise ValueError(
            f"templates {templates}: a named task ({named}) cannot be mixed with family templates"
        )
    return named_task(named[seed % len(named)], robot, seed) if named else sample_task(robot, seed, templates)


def generate_episode(
    robot: str,
    seed: int,
    image_size: tuple[int, int] = (224, 224),
    wrist: bool = False,
    templates: list[str] | None = None,
    grounding: bool = True,
    perturb: float = 0.0,
    perturb_descent: bool = False,
    grasp_rise: float = 0.0,
    grasp_miss: bool = False,
):
    """One expert episode of the family task of (robot, seed): an ``Episode`` or a ``FailedEpisode``.

    ``image_size`` is (width, height); ``templates`` restricts the draw to those template ids / skills, or
    names named tasks (``tasks.TASKS``: the evaluation's tasks) to record instead of family draws.
    ``perturb``: std [m] of the expert's DART-style target perturbation (:mod:`internvla_sim.expert`),
    drawn from a generator seeded by ``seed``; 0: the clean expert. ``perturb_descent``: the descent onto
    the grasp is perturbed as well. ``grasp_rise`` [m]: the expert rises while it holds after a grasp
    (:mod:`internvla_sim.expert`); 0: it holds still. ``grasp_miss``: record a recovery: the expert first
    misses the grasp (unrecorded, drawn from the seed) and the episode starts with its empty gripper shut
    beside the object (:class:`internvla_sim.expert.GraspMiss`; pick skills only).
    """
    from internvla_learning.episode import Episode

    from internvla_core.embodiments import get_embodiment

    from .env import SimEnv
    from .expert import ScriptedExpert
    from .ground_truth import GroundTruthRecorder, ViewRecorder
    from .task_family import InfeasibleTaskError

    embodiment = get_embodiment(EMBODIMENTS[robot])
    try:
        task = task_of(robot, seed, templates)
    except InfeasibleTaskError as error:
        return FailedEpisode(robot, seed, "infeasible_layout", str(error))
    width, height = image_size
    env = SimEnv(task, seed, embodiment.control_period, width, height, wrist, robot)
    try:
        cameras = ["third_person"] + (["wrist"] if wrist else [])
        images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
        times, state_joint, state_ee = [], [], []
        truth = GroundTruthRecorder(env) if grounding else None
        # the other cameras (the wrist's) get the labels that teach the vision encoder that view as well
        views = {c: ViewRecorder(env, c) for c in cameras if c != truth.camera} if truth is not None else {}

        def observe(env) -> None:
            times.append(env.time)
            for camera in cameras:
                images[camera].append(env.render(camera))
            state_joint.append(env.arm_positions())
            state_ee.append(measured_state_ee(env))
            if truth is not None:
                truth.observe()
            for view in views.values():
                view.observe()

        expert = ScriptedExpert(
            env,
            observe=observe,
            frame=embodiment.reference_frame,
            perturb=perturb,
            rng=np.random.default_rng([seed, 7103]),
            perturb_descent=perturb_descent,
            grasp_rise=grasp_rise,
        )
        miss = expert.miss_first(np.random.default_rng([seed, 7104])) if grasp_miss else None
        result = expert.run()
        if not result.success:
            return FailedEpisode(robot, seed, "expert_failed", "", task.name, task.skill, result.steps)
        if not times:  # a miss in a skill without a grasp: nothing was recorded
            return FailedEpisode(robot, seed, "expert_failed", "no grasp to miss", task.name, task.skill)
        metadata = {
            **task.metadata,
            "seed": seed,
            "control_dt": embodiment.control_period,
            "image_size": [width, height],
            "camera_intrinsics": env.camera_intrinsics().tolist(),
            "camera_pose": env.camera_pose().tolist(),
            "target": task.target,
            "container": task.container,
            "target_description": task.descriptions[task.target],
            "perturb": perturb,
            "perturb_descent": perturb_descent,
            "grasp_rise": grasp_rise,
            "grasp_miss": None if miss is None else {"offset": list(miss.offset), "rise": miss.rise},
        }
        episode = Episode(
            robot=robot,
            embodiment=embodiment.name,
            reference_frame=embodiment.reference_frame,
            instruction=task.instruction,
            task_template=task.name,
            seed=seed,
            fps=1.0 / embodiment.control_period,
            timestamps=np.array(times) - times[0],
            images={c: np.stack(v) for c, v in images.items()},
            joint_names=tuple(env.robot.arm_joints),
            state_joint=np.array(state_joint, dtype=np.float32),
            state_ee=np.array(state_ee, dtype=np.float32),
            action_ee_delta=np.array(result.actions, dtype=np.float32),
            action_joint=np.array(result.joint_commands, dtype=np.float32),
            success=True,
            grounding=truth.labels() if truth is not None else None,
            view_labels={c: view.labels() for c, view in views.items()},
            metadata=metadata,
        )
        episode.validate()
        return episode
    finally:
        env.close()


def expert_success(
    robot: str, seeds, templates: list[str] | None = None, by: str = "skill"
) -> dict[str, list[int]]:
    """{skill (or template id, ``by="template"``): [successes, attempts]} of the expert alone (no
    rendering); infeasible draws are counted under "(infeasible layout)"."""
    from internvla_core.embodiments import get_embodiment

    from .env import SimEnv
    from .expert import ScriptedExpert
    from .task_family import InfeasibleTaskError

    dt = get_embodiment(EMBODIMENTS[robot]).control_period
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for seed in seeds:
        try:
            task = task_of(robot, seed, templates)
        except InfeasibleTaskError:
            stats["(infeasible layout)"][1] += 1
            continue
        env = SimEnv(task, seed, dt, 64, 64, False, robot)
        success = ScriptedExpert(env).run().success
        key = task.name if by == "template" else task.skill
        stats[key][0] += int(success)
        stats[key][1] += 1
        env.close()
    return dict(stats)


# ------------------------------------------------------------------------------------------ generation
def _work(args) -> dict:
    """Worker: generate one seed, save it if it succeeded; returns a small summary (never the arrays)."""
    out_dir, robot, seed, image_size, wrist, templates, perturb, perturb_descent, grasp_rise, grasp_miss = (
        args
    )
    start = time.perf_counter()
    try:
        result = generate_episode(
            robot,
            seed,
            image_size,
            wrist,
            templates,
            perturb=perturb,
            perturb_descent=perturb_descent,
            grasp_rise=grasp_rise,
            grasp_miss=grasp_miss,
        )
    except Exception as error:  # a crash of one seed is recorded, the run goes on
        result = FailedEpisode(robot, seed, "error", f"{type(error).__name__}: {error}")
    summary = {"robot": robot, "seed": seed, "seconds": round(time.perf_counter() - start, 3)}
    if isinstance(result, FailedEpisode):
        return {**summary, "ok": False, "failure": asdict(result)}
    from internvla_learning.episode import save_episode

    save_episode(result, episode_path(out_dir, robot, seed))
    return {**summary, "ok": True, "frames": result.length, "template": result.task_template,
            "skill": result.metadata["skill"]}  # fmt: skip


def done_seeds(out_dir: str | Path, robot: str) -> set[int]:
    """Seeds of ``robot`` already written or recorded as failed under ``out_dir``."""
    out_dir = Path(out_dir)
    seeds = {int(p.stem.rsplit("_", 1)[1]) for p in (out_dir / "episodes").glob(f"{robot}_seed_*.npz")}
    failures = out_dir / FAILURES
    if failures.exists():
        for line in failures.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash: that seed runs again
                continue
            if record.get("robot") == robot:
                seeds.add(int(record["seed"]))
    return seeds


class GeneratorMismatchError(ValueError):
    """A staging directory holds episodes of ``robot`` made with other settings than the ones asked for."""


def generator_settings(
    image_size: tuple[int, int],
    wrist: bool,
    templates: list[str] | None,
    perturb: float,
    perturb_descent: bool,
    grasp_rise: float,
    grasp_miss: bool,
) -> dict:
    """What decides the episodes a run writes, besides the seed (JSON-ready)."""
    return {
        "expert_version": EXPERT_VERSION,
        "image_size": list(image_size),
        "wrist": bool(wrist),
        "templates": sorted(templates) if templates else None,
        "perturb": float(perturb),
        "perturb_descent": bool(perturb_descent),
        "grasp_rise": float(grasp_rise),
        "grasp_miss": bool(grasp_miss),
    }


def check_generator(out_dir: str | Path, robot: str, settings: dict) -> None:
    """Record ``settings`` for ``robot`` in ``<out_dir>/generator.json``, or refuse to resume with others.

    A directory written before this record existed has its episodes accepted as they are (nothing tells
    what made them) and gets the record now.
    """
    path = Path(out_dir) / GENERATOR
    recorded = json.loads(path.read_text()) if path.exists() else {}
    before = recorded.get(robot)
    if before is not None and before != settings:
        differs = ", ".join(
            f"{key}: {before.get(key)!r} there, {settings.get(key)!r} now"
            for key in sorted(set(before) | set(settings))
            if before.get(key) != settings.get(key)
        )
        raise GeneratorMismatchError(
            f"{out_dir} holds {robot} episodes made with other settings ({differs}); resuming would mix "
            "two kinds of demonstration. Write to another --out, or move that directory aside."
        )
    if before is None:
        path.write_text(json.dumps({**recorded, robot: settings}, indent=2, sort_keys=True) + "\n")


def generate(
    out_dir: str | Path,
    robot: str,
    episodes: int,
    seed_start: int = 0,
    workers: int = 1,
    image_size: tuple[int, int] = (224, 224),
    wrist: bool = False,
    templates: list[str] | None = None,
    progress: bool = True,
    perturb: float = 0.0,
    perturb_descent: bool = False,
    grasp_rise: float = 0.0,
    grasp_miss: bool = False,
) -> dict:
    """Generate seeds [seed_start, seed_start + episodes) of ``robot`` into ``out_dir`` (resumable).

    Returns counts: written, failed (by reason), skipped (done before), frames, success per skill of the
    seeds run now, episodes per minute.
    """
    import multiprocessing

    from tqdm import tqdm

    out_dir = Path(out_dir)
    (out_dir / "episodes").mkdir(parents=True, exist_ok=True)
    options = (perturb, perturb_descent, grasp_rise, grasp_miss)
    check_generator(out_dir, robot, generator_settings(image_size, wrist, templates, *options))
    done = done_seeds(out_dir, robot)
    seeds = [s for s in range(seed_start, seed_start + episodes) if s not in done]
    jobs = [(str(out_dir), robot, s, tuple(image_size), wrist, templates, *options) for s in seeds]
    stats = {"written": 0, "frames": 0, "skipped": episodes - len(seeds), "failed": defaultdict(int)}
    per_skill: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    expert_runs = expert_ok = 0
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc=f"{robot} episodes", unit="ep", disable=not progress)
    pool = None
    if workers > 1 and len(jobs) > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_work, jobs)
    else:
        results = map(_work, jobs)
    try:
        with open(out_dir / FAILURES, "a") as failures:
            for done_count, summary in enumerate(results, 1):
                if summary["ok"]:
                    stats["written"] += 1
                    stats["frames"] += summary["frames"]
                    expert_runs, expert_ok = expert_runs + 1, expert_ok + 1
                    per_skill[summary["skill"]][0] += 1
                    per_skill[summary["skill"]][1] += 1
                else:
                    failure = summary["failure"]
                    stats["failed"][failure["reason"]] += 1
                    if failure["reason"] == "expert_failed":
                        expert_runs += 1
                        per_skill[failure["skill"]][1] += 1
                    failures.write(json.dumps({**failure, "seconds": summary["seconds"]}) + "\n")
                    failures.flush()
                elapsed = time.perf_counter() - start
                eta = elapsed / done_count * (len(jobs) - done_count)
                bar.set_postfix(
                    written=stats["written"],
                    frames=stats["frames"],
                    expert=f"{expert_ok}/{expert_runs}",
                    eta=f"{eta / 60:.1f}min",
                )
                bar.update()
    except BaseException:
        if pool is not None:
            pool.terminate()  # Ctrl-C: finished seeds are on disk, the rest run on the next call
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    elapsed = time.perf_counter() - start
    stats["failed"] = dict(stats["failed"])
    stats["success_per_skill"] = {k: tuple(v) for k, v in sorted(per_skill.items())}
    stats["seconds"] = round(elapsed, 1)
    stats["episodes_per_min"] = round(60 * len(jobs) / elapsed, 2) if jobs and elapsed > 0 else 0.0
    return stats


def _print_skills(title: str, per_skill: dict) -> None:
    print(title)
    total_ok = total = 0
    for skill, (ok, n) in sorted(per_skill.items()):
        print(f"  {skill:22s} {ok:4d}/{n:<4d} {100 * ok / n if n else 0:5.1f} %")
        if not skill.startswith("("):
            total_ok, total = total_ok + ok, total + n
    if total:
        print(f"  {'all skills':22s} {total_ok:4d}/{total:<4d} {100 * total_ok / total:5.1f} %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m internvla_sim.data_engine",
        description="Generate scripted-expert episodes of the procedural task family (no ROS).",
    )
    parser.add_argument("--robot", choices=sorted(EMBODIMENTS), default="franka")
    parser.add_argument(
        "--episodes", type=int, default=10, help="seeds attempted: [seed-start, seed-start+N)"
    )
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--out", default="data/sim_staging", help="staging directory")
    parser.add_argument("--image-size", type=int, nargs="+", default=[224], help="W [H] of the images")
    parser.add_argument("--wrist", action="store_true", help="also record the wrist camera")
    parser.add_argument(
        "--templates", nargs="*", help="restrict to these template ids or skills, or named tasks (pick_green)"
    )
    parser.add_argument(
        "--perturb",
        type=float,
        default=0.0,
        help="std [m] of the expert's drifting target offset while it travels (DART-style corrections)",
    )
    parser.add_argument(
        "--perturb-descent",
        action="store_true",
        help="--perturb also the descent onto the grasp (sideways corrections on the way down)",
    )
    parser.add_argument(
        "--grasp-rise",
        type=float,
        default=0.0,
        help="[m] once the fingers rest after a grasp, rise k times this per step (k = 1, 2, ...) instead of "
        "holding still: every step of the hold a different picture (0: hold still, the old expert)",
    )
    parser.add_argument(
        "--grasp-miss",
        action="store_true",
        help="record recoveries: each episode starts after an unrecorded grasp beside the object (the empty "
        "gripper shut, raised 0-8 cm), its labels reopen, go back above the object and pick it",
    )
    parser.add_argument(
        "--expert-only", action="store_true", help="only run the expert and print its success per skill"
    )
    parser.add_argument(
        "--by", choices=["skill", "template"], default="skill", help="--expert-only: group by"
    )
    args = parser.parse_args(argv)
    if args.expert_only:
        seeds = range(args.seed_start, args.seed_start + args.episodes)
        start = time.perf_counter()
        stats = expert_success(args.robot, seeds, args.templates, args.by)
        _print_skills(
            f"{args.robot}: expert success per {args.by}, seeds {seeds.start}..{seeds.stop - 1}", stats
        )
        print(f"  {time.perf_counter() - start:.1f} s")
        return 0
    size = tuple(args.image_size * 2 if len(args.image_size) == 1 else args.image_size[:2])
    try:
        stats = _generate_from_args(args, size)
    except GeneratorMismatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _print_skills(f"{args.robot}: expert success per skill (seeds run now)", stats.pop("success_per_skill"))
    print(json.dumps(stats))
    return 0


def _generate_from_args(args: argparse.Namespace, size: tuple[int, int]) -> dict:
    return generate(
        args.out,
        args.robot,
        args.episodes,
        args.seed_start,
        args.workers,
        size,
        args.wrist,
        args.templates,
        perturb=args.perturb,
        perturb_descent=args.perturb_descent,
        grasp_rise=args.grasp_rise,
        grasp_miss=args.grasp_miss,
    )


if __name__ == "__main__":
    raise SystemExit(main())
