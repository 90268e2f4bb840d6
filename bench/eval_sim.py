"""Closed-loop evaluation of a checkpoint in simulation, through the real node graph.

    source scripts/env.sh && python bench/eval_sim.py --checkpoint runs/s2 --episodes 200 --workers 2 \\
        [--robot franka|widowx] [--tasks red_on_plate pick_green push_blue_left] [--seed-start 1000000] \\
        [--max-steps 150] [--skip-grounding] [--image-size 224] [--out eval_out]

Episode ``i`` runs task ``tasks[i % len(tasks)]`` on seed ``seed-start + i``. Seeds start at 1,000,000,
disjoint from the data engine's training seeds; lower seeds are refused unless ``--allow-training-seeds``.
Every episode composes the setup's simulated graph (``sim_franka`` / ``sim_widowx``: sim node with the
lock-step clock, policy_node with ``--checkpoint``, chunk_executor, the grounding node unless
``--skip-grounding``) on an rclpy context of its own with a ROS_DOMAIN_ID of its own (workers never share
one: ``internvla_learning.evaluation.domain_for``), sends one ExecuteInstruction goal of at most
``--max-steps`` model queries, and scores the sim's own success check when the goal ends (the policy
node also ends the goal when ``task/success`` turns true). ``--workers`` processes run episodes in
parallel (spawned: one MuJoCo / torch / DDS stack per process).

Prints one line per episode, then success per task and overall with Wilson 95 % intervals, episode
lengths, per-stage latency (policy inference p50 / p95) and a last line ``success: <rate>``; writes
``results.csv`` (one row per episode), ``results.md`` and ``success.png`` into ``--out``. Without
``--checkpoint`` the policy is the untrained tiny factory model: the loop is real, the actions are noise.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def _target_rise(env) -> float:
    """The target's height now minus at the start [m] (a lift shows as > 0)."""
    target = env.task.target
    return float(env.object_positions()[target][2] - env.start_positions[target][2])


def _graded_progress(env) -> tuple[float, float]:
    """Distance from the gripper's TCP to the target's centre and the target's rise since the start [m]."""
    return float(np.linalg.norm(_tcp_to_target(env))), _target_rise(env)


def _target_progress(env) -> tuple[float, float, float | None]:
    """The target's xy move since the start (a push) and, for a task with a container, its xy distance to
    the container's centre (a place) [m]: what a failed push or place got done."""
    now = env.object_positions()
    target = env.task.target
    shift = now[target][:2] - env.start_positions[target][:2]
    container = getattr(env.task, "container", None)
    to_container = None
    if container is not None and container in now:
        to_container = float(np.linalg.norm(now[target][:2] - now[container][:2]))
    return float(shift[0]), float(shift[1]), to_container


def _tcp_to_target(env) -> np.ndarray:
    """The gripper's TCP minus the target's centre, robot base frame [m]."""
    return np.asarray(env.tcp_position()) - env.object_positions()[env.task.target]


def _monitor_class():
    from internvla_bringup.run import EpisodeMonitor

    class StageMonitor(EpisodeMonitor):
        """EpisodeMonitor that also keeps every chunk's per-stage latency."""

        def __init__(self, node) -> None:
            self.stages: dict[str, list[float]] = {}
            super().__init__(node)

        def _on_chunk(self, msg) -> None:
            super()._on_chunk(msg)
            if msg.rows:
                with self._lock:
                    self.stages.setdefault("inference", []).append(float(msg.inference_latency))
                    for stage in msg.stages:
                        self.stages.setdefault(stage.stage, []).append(float(stage.seconds))

    return StageMonitor


def run_episode(
    robot: str,
    task: str,
    seed: int,
    *,
    checkpoint: str = "",
    max_steps: int = 150,
    skip_grounding: bool = False,
    spatial_prompt: bool = True,
    image_size: tuple[int, int] = (224, 224),
    wrist: bool = False,
    cfg_scale: float | None = None,
    noise_seed: int = -1,
    ddim_steps: int | None = None,
    executor_mode: str | None = None,
    gripper_settle_steps: int | None = None,
    execute_steps: int | None = None,
    gripper_commit_steps: int | None = None,
    ensemble_horizon: int | None = None,
    max_sim_steps: int | None = None,
    trace: bool = False,
    domain_id: int | None = None,
    index: int = 0,
    device: str = "",
    timeout: float = 900.0,
):
    """One evaluation episode through the node graph; returns its ``EpisodeResult`` (``error`` set when it
    could not run: a node failed to start, the goal was refused, ...). ``wrist``: the sim renders its
    wrist camera and the policy sends it as the second view (a model trained with ``--cameras
    third_person wrist``). ``cfg_scale``: policy_node's classifier-free guidance scale (None: its
    default). ``noise_seed``: policy_node's diffusion noise seed (-1: random at every inference, so a
    repeated evaluation differs; ``episode_noise_seed(seed)`` makes the episode repeatable). ``ddim_steps``:
    DDIM steps per inference (None: policy_node's default). ``executor_mode``: chunk_executor's ``mode``
    (None: its default, ensemble). ``gripper_settle_steps``, ``execute_steps``, ``gripper_commit_steps``, ``ensemble_horizon``:
    chunk_executor's (None: its defaults, 0). ``max_sim_steps``: a success counts only when the goal ended within that many
    control steps (the policy ends the goal at success), whatever the number of model queries: with
    ``execute_steps`` the policy is queried less often than once per step, so ``max_steps`` (queries)
    alone would give those episodes more time.
    ``trace``: record TCP - target, the commanded gripper opening, the
    measured finger opening and the target's rise at every sim step into ``result.trace``."""
    import rclpy
    from internvla_learning.evaluation import EpisodeResult
    from rclpy.action import ActionClient
    from rclpy.context import Context
    from rclpy.node import Node
    from std_msgs.msg import String

    from internvla_bringup.composition import Composition
    from internvla_bringup.graphs import GraphOptions, build_graph
    from internvla_bringup.run import run_goal
    from internvla_msgs.action import ExecuteInstruction

    result = EpisodeResult(
        index=index, robot=robot, task=task, seed=seed, success=False, checkpoint=checkpoint,
        domain_id=-1 if domain_id is None else domain_id,
    )  # fmt: skip
    start = time.perf_counter()
    # model_card=False: an evaluation runs at the settings its own flags name (a checkpoint's card would
    # otherwise set cfg_scale and the executor's settings where a flag is left out)
    options = GraphOptions(task=task, seed=seed, checkpoint=checkpoint, device=device, model_card=False)
    graph = build_graph(f"sim_{robot}", options)
    context = Context()
    rclpy.init(args=[], context=context, domain_id=domain_id)
    composition = runner = None
    try:
        width, height = image_size
        sim_params = {
            "width": width, "height": height, "publish_depth": not skip_grounding, "render_wrist": wrist,
        }  # fmt: skip
        skip = ("grounding_node",) if skip_grounding else ()
        policy_params = {"spatial_prompt": spatial_prompt, "wrist_view": wrist}
        if cfg_scale is not None:
            policy_params["cfg_scale"] = cfg_scale
        if ddim_steps is not None:
            policy_params["num_ddim_steps"] = ddim_steps
        policy_params["seed"] = noise_seed
        overrides = {"sim": sim_params, "policy_node": policy_params}
        executor_settings = {
            "mode": executor_mode,
            "gripper_settle_steps": gripper_settle_steps,
            "execute_steps": execute_steps,
            "gripper_commit_steps": gripper_commit_steps,
            "ensemble_horizon": ensemble_horizon,
        }
        executor_params = {name: value for name, value in executor_settings.items() if value is not None}
        if executor_params:
            overrides["chunk_executor"] = executor_params
        composition = Composition.create(graph, context, overrides, skip=skip)
        runner = Node("eval_sim", namespace=graph.namespace, context=context)
        monitor = _monitor_class()(runner)
        client = ActionClient(runner, ExecuteInstruction, "execute_instruction")
        instruction_pub = runner.create_publisher(String, "instruction", 1)
        composition.add_executors(extra_nodes=(runner,))
        composition.spin_in_background()
        failures = composition.activate()
        if failures:
            raise RuntimeError("; ".join(failures))
        policy = composition.nodes["policy_node"].model.policy  # the model the node loaded on configure
        result.loaded_checkpoint = str(policy.checkpoint_path) if policy is not None else ""
        sim = composition.nodes["sim"]
        result.instruction = sim.env.task.instruction
        if not skip_grounding:  # the grounding node answers once for the episode's instruction
            instruction_pub.publish(String(data=result.instruction))
        args = SimpleNamespace(steps=max_steps, timeout=timeout, checkpoint=checkpoint, task=task, seed=seed)
        result.start_tcp_to_target_m = _graded_progress(sim.env)[0]
        tracer = StepTracer(sim) if trace else None
        try:
            summary = run_goal(composition, client, monitor, args, result.instruction)
        finally:
            if tracer is not None:
                result.trace = tracer.stop()
        result.success = bool(sim.env.success())  # the sim's own check, after the last command
        result.final_tcp_to_target_m, result.target_rise_m = _graded_progress(sim.env)
        result.target_shift_x_m, result.target_shift_y_m, result.target_to_container_m = _target_progress(
            sim.env
        )
        result.sim_steps = int(sim.steps)
        result.policy_chunks = int(summary["policy_chunks"])
        result.goal_result = str(summary["goal_result"])
        if result.success and max_sim_steps is not None and result.sim_steps > max_sim_steps:
            result.success = False  # solved, but after the control-step budget
            result.goal_result = (
                f"solved after {result.sim_steps} steps, over --max-sim-steps {max_sim_steps}"
            )
        result.inference_p50_s = summary["inference_p50_s"]
        with monitor._lock:
            result.latency = {k: list(v) for k, v in monitor.stages.items()}
    except Exception as exc:  # one broken episode is a failed row, the evaluation goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if composition is not None:
            composition.shutdown_executors()
            composition.destroy()
        if runner is not None:
            runner.destroy_node()
        rclpy.try_shutdown(context=context)
    result.wall_s = round(time.perf_counter() - start, 3)
    return result


class StepTracer:
    """Samples TCP - target (robot base frame), the commanded gripper opening, the measured finger
    opening (``SimEnv.finger_opening``) and the target's rise since the start once per sim step, from
    a thread beside the sim's: the sim node offers no per-step hook, and a diagnostic must not change how
    the episode runs. A sample is read while the sim may be stepping, so a value can mix two adjacent
    steps (millimetres)."""

    def __init__(self, sim, poll_s: float = 0.002) -> None:
        self.sim, self.poll_s = sim, poll_s
        self.samples: list[tuple[float, ...]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="step_tracer")
        self._thread.start()

    def _run(self) -> None:
        last = -1
        while not self._stop.is_set():
            step = int(self.sim.steps)
            if step != last:
                last = step
                self._sample(step)
            self._stop.wait(self.poll_s)

    def _sample(self, step: int) -> None:
        env = self.sim.env
        gripper = (env.commanded_gripper_opening(), env.finger_opening())
        self.samples.append((step, *(float(v) for v in _tcp_to_target(env)), *gripper, _target_rise(env)))

    def stop(self) -> list[tuple[float, ...]]:
        self._stop.set()
        self._thread.join(2.0)
        step = int(self.sim.steps)
        if self.samples and self.samples[-1][0] == step:
            self.samples.pop()
        self._sample(step)  # the state the episode ended in
        return self.samples


# ------------------------------------------------------------------------------------------ worker pool

_WORKER = SimpleNamespace(id=0, count=0, workers=1)


def _init_worker(ids, workers: int) -> None:
    _WORKER.id, _WORKER.count, _WORKER.workers = ids.get(), 0, workers


def _work(job: tuple) -> object:
    from internvla_learning.evaluation import domain_for

    index, robot, task, seed, options = job
    domain = domain_for(_WORKER.id, _WORKER.count, _WORKER.workers)
    _WORKER.count += 1
    return run_episode(robot, task, seed, index=index, domain_id=domain, **options)


def run_all(jobs: list[tuple], workers: int, on_result=None) -> list:
    """Run the jobs (index, robot, task, seed, options) on ``workers`` processes; results by index."""
    results = []
    if workers <= 1:
        _WORKER.id, _WORKER.count, _WORKER.workers = 0, 0, 1
        for job in jobs:
            results.append(_work(job))
            if on_result:
                on_result(results[-1])
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        ids = ctx.Manager().Queue()
        for k in range(workers):
            ids.put(k)
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(ids, workers), maxtasksperchild=None)
        try:
            for r in pool.imap_unordered(_work, jobs):
                results.append(r)
                if on_result:
                    on_result(r)
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.close()
            pool.join()
    return sorted(results, key=lambda r: r.index)


def _sim_task(task: str) -> str:
    from internvla_bringup.graphs import known_sim_task

    if not known_sim_task(task):
        raise argparse.ArgumentTypeError(f"unknown task '{task}' (named, 'family', a template id or a skill)")
    return task


def checkpoint_views(checkpoint: str) -> list[str]:
    """The camera views a checkpoint (run dir or .pt) was trained on; [] when it does not say."""
    from internvla_core.policy_setup import local_checkpoint_views

    return local_checkpoint_views(checkpoint) or []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from internvla_sim.tasks import TASKS  # the one task registry

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="", help="run dir or .pt (default: the untrained tiny model)")
    p.add_argument("--robot", default="franka", choices=["franka", "widowx"])
    p.add_argument(
        "--tasks",
        nargs="+",
        default=sorted(TASKS),
        type=_sim_task,
        help="named tasks (default: the three), 'family' (each seed's procedural task), template ids, skills",
    )
    p.add_argument("--episodes", type=int, default=200, help="episodes in all (tasks in turn)")
    p.add_argument("--seed-start", type=int, default=1_000_000, help="first seed (evaluation range)")
    p.add_argument("--allow-training-seeds", action="store_true", help="allow seeds below 1,000,000")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--max-steps", type=int, default=150, help="model queries per episode")
    p.add_argument("--skip-grounding", action="store_true", help="do not start the grounding node")
    p.add_argument(
        "--no-spatial-prompt",
        dest="spatial_prompt",
        action="store_false",
        help="the policy gets the bare instruction (a model trained with internvla-train --no-spatial-prompt)",
    )
    p.add_argument("--image-size", type=int, nargs="+", default=[224], help="sim camera W [H] (pixels)")
    p.add_argument(
        "--wrist",
        choices=["auto", "on", "off"],
        default="auto",
        help="render the sim's wrist camera and send it as the second view (auto: when the checkpoint "
        "was trained on a 'wrist' camera)",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="record TCP - target, the gripper command, the finger opening and the target's rise at every sim "
        "step: traces.csv and traces.png beside results.csv",
    )
    p.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale (default: policy_node's)")
    p.add_argument("--ddim-steps", type=int, help="DDIM steps per inference (default: policy_node's)")
    p.add_argument(
        "--noise",
        choices=["episode", "random"],
        default="episode",
        help="diffusion noise: seeded from the episode's seed, so that a rerun repeats every episode "
        "(default), or random at every inference (policy_node's seed -1)",
    )
    p.add_argument(
        "--executor-mode",
        choices=["ensemble", "chunk"],
        default=None,
        help="chunk_executor's mode: ensemble (re-query every step and average the overlapping chunks, "
        "its default) or chunk (execute each chunk, blend the seams)",
    )
    p.add_argument(
        "--gripper-settle-steps",
        type=int,
        default=None,
        help="chunk_executor's gripper_settle_steps: steps the arm holds after each gripper change "
        "(default: its 0)",
    )
    p.add_argument(
        "--execute-steps",
        type=int,
        default=None,
        help="chunk_executor's execute_steps (chunk mode): rows of each chunk executed before the next "
        "one takes over, so the policy re-plans every N steps (default: its 0)",
    )
    p.add_argument(
        "--gripper-commit-steps",
        type=int,
        default=None,
        help="chunk_executor's gripper_commit_steps (ensemble mode): after a change of the gripper "
        "decision, this many actions come from the chunk that made it (default: its 0)",
    )
    p.add_argument(
        "--ensemble-horizon",
        type=int,
        default=None,
        help="chunk_executor's ensemble_horizon (ensemble mode): how many of the newest chunks are averaged "
        "for each step (default: the embodiment's, 3 for the Franka)",
    )
    p.add_argument(
        "--max-sim-steps",
        type=int,
        default=None,
        help="a success counts only within this many control steps (use with --execute-steps, where "
        "--max-steps, a number of model queries, lasts more steps)",
    )
    p.add_argument("--device", default="", help="torch device of the policy (default: the YAML's cpu)")
    p.add_argument("--timeout", type=float, default=900.0, help="wall seconds per episode's goal")
    p.add_argument("--out", default="eval_out", help="directory for results.csv / results.md / success.png")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from internvla_learning.evaluation import (
        check_seeds,
        episode_noise_seed,
        episode_plan,
        report_lines,
        write_reports,
    )

    args = parse_args(argv)
    try:
        seeds = check_seeds(args.seed_start, args.episodes, args.allow_training_seeds)
    except ValueError as exc:
        print(f"eval_sim: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("eval_sim: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.checkpoint and not Path(args.checkpoint).exists():
        print(f"eval_sim: --checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 2
    size = tuple(args.image_size * 2 if len(args.image_size) == 1 else args.image_size[:2])
    wrist = args.wrist == "on" or (args.wrist == "auto" and "wrist" in checkpoint_views(args.checkpoint))
    options = dict(checkpoint=str(Path(args.checkpoint).resolve()) if args.checkpoint else "",
                   max_steps=args.max_steps, skip_grounding=args.skip_grounding, image_size=size,
                   spatial_prompt=args.spatial_prompt, wrist=wrist, cfg_scale=args.cfg_scale,
                   ddim_steps=args.ddim_steps, executor_mode=args.executor_mode,
                   gripper_settle_steps=args.gripper_settle_steps, execute_steps=args.execute_steps,
                   gripper_commit_steps=args.gripper_commit_steps, ensemble_horizon=args.ensemble_horizon,
                   max_sim_steps=args.max_sim_steps, trace=args.trace,
                   device=args.device, timeout=args.timeout)  # fmt: skip
    jobs = [
        (
            i,
            args.robot,
            task,
            seed,
            {**options, "noise_seed": episode_noise_seed(seed) if args.noise == "episode" else -1},
        )
        for i, task, seed in episode_plan(args.tasks, seeds)
    ]
    print(
        f"eval_sim: {len(jobs)} episodes ({args.robot}, {', '.join(args.tasks)}), seeds {seeds.start}.."
        f"{seeds.stop - 1}, {args.workers} worker(s), checkpoint {args.checkpoint or 'tiny untrained'}"
        f"{', wrist camera on' if wrist else ''}",
        flush=True,
    )
    lock = threading.Lock()
    done = [0]
    t0 = time.perf_counter()

    def show(r) -> None:
        with lock:
            done[0] += 1
            status = "ok  " if r.success else "fail"
            extra = f"  ERROR {r.error}" if r.error else f"  {r.goal_result}"
            p50 = f"{1e3 * r.inference_p50_s:.0f} ms" if r.inference_p50_s is not None else "-"
            print(
                f"[{done[0]:4d}/{len(jobs)}] {r.task:15s} seed {r.seed} {status} steps {r.sim_steps:4d} "
                f"chunks {r.policy_chunks:4d} inference p50 {p50}  {r.wall_s:.1f} s  domain {r.domain_id}{extra}",
                flush=True,
            )

    try:
        results = run_all(jobs, args.workers, show)
    except KeyboardInterrupt:
        print("eval_sim: interrupted", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - t0
    paths = write_reports(results, args.out, f"Evaluation: {args.checkpoint or 'tiny untrained model'}")
    print(f"{len(results)} episodes in {elapsed:.0f} s ({elapsed / len(results):.1f} s per episode with "
          f"{args.workers} worker(s)); wrote {', '.join(str(p) for p in paths.values())}")  # fmt: skip
    print("\n".join(report_lines(results)), flush=True)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
