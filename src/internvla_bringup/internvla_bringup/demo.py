"""The one-command demo: a simulated arm runs an instruction end to end, and leaves artefacts.

    python -m internvla_bringup.demo [--robot franka|widowx] [--task red_on_plate] [--seed 0] [--steps 40]
                                     [--out demo_out]

It composes the bringup's ``sim_franka`` (default) or ``sim_widowx`` graph in one process, real rclpy
(DDS on localhost): the MuJoCo sim (lock-step clock) publishes camera, depth, camera_info,
joint_states and ee_pose; grounding_node answers where to act (one Ground call with the
task's instruction); policy_node runs the ExecuteInstruction goal and publishes action chunks;
chunk_executor turns them into joint trajectories (IK, safety limits) that move the simulated arm.
Written to ``--out``: ``episode.mp4`` (camera view with the grounding overlay and the executed
end-effector path), ``episode.mcap`` with rosbag2's ``metadata.yaml`` (every topic,
see :mod:`internvla_bringup.recording`; ``ros2 bag info <out>``, Foxglove, ``rosbags``), ``summary.json``
(task, seed, success from the sim's own check, steps, wall/sim time, per-stage latency p50/p95, loop
rates) and ``latency.png``.

The model is ``--checkpoint`` when given, else the model trained in this repository for the task on the
robot (``models/m1_tiny_<robot>_<task>``, written by ``scripts/train_task.sh``; ``m1_tiny_franka_pick_green``:
80 % of 200 held-out pick_green episodes, see its README), else the tiny, untrained factory model: the loop
is real and measured, the actions are noise, and the summary says so (the WidowX has no trained model yet).
``--random-model`` forces the untrained model. A trained model runs at the guidance scale its card says it
was evaluated at (``--cfg-scale`` overrides) and with the executor settings the card names
(``executor``, e.g. ``gripper_commit_steps``; ``--gripper-commit-steps`` overrides). ``summary.json`` names
the model (path, weights file and its sha256, the model card's fields) and the scale next to the sim's own
success check.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

# the topics the artefacts are made from (every topic is recorded: recording.SIM_TOPICS)
ARTEFACT_TOPICS = ("camera/image_raw", "grounding", "action_chunk", "task/success", "ee_pose")


def is_motion_chunk(msg) -> bool:
    """An ActionChunk with rows to execute, not the STOP / ABORT that ends a goal (``command``)."""
    return msg.command == type(msg).CHUNK and msg.rows > 0


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def grounding_result_from_msg(msg):
    from internvla_core.grounding import GroundedBox, GroundedPoint, GroundedTrace, GroundingResult

    return GroundingResult(
        instruction=msg.instruction,
        kinds=tuple(msg.kind.split(",")) if msg.kind else (),
        boxes=[GroundedBox(o.label, o.x1, o.y1, o.x2, o.y2, o.score) for o in msg.objects],
        points=[GroundedPoint(p.label, p.u, p.v) for p in msg.points],
        traces=[GroundedTrace(t.label, list(zip(t.u, t.v))) for t in msg.traces],
        image_size=(msg.image_width, msg.image_height),
    )


def draw_path(frame: np.ndarray, pixels: list[tuple[float, float]]) -> np.ndarray:
    import cv2

    out = frame.copy()
    pts = np.round(np.array(pixels, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
    if len(pts) >= 2:
        cv2.polylines(out, [pts], False, (255, 60, 200), 2, cv2.LINE_AA)
    if len(pts):
        cv2.circle(out, tuple(pts[-1, 0]), 4, (255, 60, 200), -1)
    return out


def latency_plot(latency: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in latency if latency[s]["count"]]
    x = np.arange(len(stages))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, [1e3 * latency[s]["p50"] for s in stages], 0.4, label="p50")
    ax.bar(x + 0.2, [1e3 * latency[s]["p95"] for s in stages], 0.4, label="p95")
    ax.set_xticks(x, stages, rotation=30, ha="right")
    ax.set_yscale("log")  # grounding (one autoregressive answer) is ~100x a policy stage: keep both readable
    ax.set_ylabel("ms (log scale)")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.set_title("per-stage latency (policy chunks and grounding)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:

    import rclpy
    from rclpy.action import ActionClient
    from rclpy.context import Context
    from rclpy.node import Node
    from tqdm import tqdm

    from internvla_core.drawing import draw_grounding
    from internvla_core.image_conversion import image_to_rgb
    from internvla_core.latency import RollingStats
    from internvla_msgs.action import ExecuteInstruction
    from internvla_msgs.srv import Ground
    from internvla_ros_common.action_goals import send_goal

    from .composition import Composition
    from .graphs import GraphOptions, build_graph
    from .recording import SIM_TOPICS, McapRecorder, TopicRecorder, available_topics

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = model_identity(args)
    t_start = time.perf_counter()
    context = Context()
    rclpy.init(args=[], context=context)
    # the sim_<robot> graph of internvla_bringup.graphs: the nodes, YAML and overrides `ros2 launch` uses
    graph = build_graph(
        f"sim_{args.robot}",
        GraphOptions(checkpoint=model["checkpoint"], task=args.task, seed=args.seed, clock_mode=args.clock),
    )
    # every node but the simulator; activate() builds and starts it last, once every model is loaded
    cfg_scale = demo_cfg_scale(args, model)
    extra = {"sim": {"width": args.width, "height": args.height}}
    if cfg_scale is not None:
        extra["policy_node"] = {"cfg_scale": cfg_scale}
    executor_params = demo_executor_params(args, model)
    if executor_params:
        extra["chunk_executor"] = executor_params
    composition = Composition.create(graph, context, extra)
    executor_node = composition.nodes["chunk_executor"]
    from rclpy.parameter import Parameter
    from rclpy.serialization import deserialize_message

    # the recorder's clock is the graph's (sim time): log_time = receive time on /clock
    recorder_node = Node(
        "demo_recorder", context=context, parameter_overrides=[Parameter("use_sim_time", value=True)]
    )
    # episode.mcap plus rosbag2's metadata.yaml: `ros2 bag info <out>` and rosbags' Reader open both
    recorder = McapRecorder(
        out / "episode.mcap", custom_data={"task": args.task, "seed": args.seed, "robot": args.robot}
    )
    lock = threading.Lock()
    raw: list[tuple[str, type, bytes, int]] = []  # (topic, type, CDR bytes, stamp): decoded afterwards

    def on_message(topic: str, msg_type, data: bytes, stamp: int) -> None:
        if topic not in ARTEFACT_TOPICS:
            return
        with lock:
            raw.append((topic, msg_type, data, stamp))
        if topic == "action_chunk" and is_motion_chunk(deserialize_message(data, msg_type)):
            progress.update(1)

    topic_recorder = TopicRecorder(recorder_node, available_topics(SIM_TOPICS), on_message)
    topic_recorder.start(recorder)

    # built before any executor spins the node: rclpy's ActionClient registers itself with the node before
    # it creates its lock, and a spin thread that sees it half-built dies on AttributeError '_lock'
    action = ActionClient(recorder_node, ExecuteInstruction, "execute_instruction")
    composition.add_executors(extra_nodes=(recorder_node,))
    composition.spin_in_background()
    progress = tqdm(total=args.steps, desc=f"{args.robot} {args.task} (seed {args.seed})", unit="step")
    result_reason, ground_time = "not started", float("nan")
    sim = None
    try:
        composition.activate()
        sim = composition.nodes["sim"]
        instruction = sim.env.task.instruction
        client = recorder_node.create_client(Ground, "ground")
        client.wait_for_service(timeout_sec=10)
        for _attempt in range(40):  # the first camera image may still be on its way
            t0 = time.perf_counter()
            ground = client.call_async(Ground.Request(instruction=instruction, kinds=["box", "point"]))
            while not ground.done() and time.perf_counter() - t0 < 120:
                time.sleep(0.05)
            ground_time = time.perf_counter() - t0
            if ground.done() and (ground.result().success or "no image yet" not in ground.result().message):
                break
            time.sleep(0.25)
        action.wait_for_server(timeout_sec=10)
        goal_request = ExecuteInstruction.Goal(instruction=instruction, max_steps=args.steps)
        goal = send_goal(action, ExecuteInstruction, goal_request)  # survives rclpy's lost goal answer
        deadline = time.monotonic() + args.timeout
        while not goal.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        result = goal.result().get_result_async() if goal.done() and goal.result().accepted else None
        while result is not None and not result.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        if result is None:
            result_reason = "goal not accepted (see policy_node's log)" if goal.done() else "demo timeout"
        else:
            result_reason = result.result().result.reason if result.done() else "demo timeout"
        time.sleep(0.3)  # the last commands and observations reach the recorder
    finally:
        progress.close()
        composition.shutdown_executors()
        if sim is not None:
            sim_seconds = sim.env.time
            sim_steps = sim.steps
            camera_k = sim.env.camera_intrinsics()
            camera_pose = sim.env.camera_pose()
            control_dt = sim.env.control_dt  # the sim frees its scene when destroyed
        executor_rate = executor_node.rate_meter.rate()
        composition.destroy()
        recorder_node.destroy_node()
        rclpy.shutdown(context=context)
    wall = time.perf_counter() - t_start

    # ---------------------------------------------------------------------------------- decode
    topic_recorder.stop()
    recorder.close()
    frames: list[tuple[int, object]] = []
    state: dict = {"grounding": None, "success": False, "chunks": [], "ee": []}
    for topic, msg_type, data, t_ns in raw:
        msg = deserialize_message(data, msg_type)
        if topic == "camera/image_raw":
            frames.append((t_ns, msg))
        elif topic == "grounding":
            state["grounding"] = msg
        elif topic == "action_chunk" and is_motion_chunk(msg):
            state["chunks"].append(msg)
        elif topic == "task/success":
            state["success"] = bool(msg.data)
        elif topic == "ee_pose":
            p = msg.pose.position
            state["ee"].append((t_ns, np.array([p.x, p.y, p.z])))

    # ---------------------------------------------------------------------------------- artefacts
    import imageio.v2 as imageio

    grounding_result = (
        grounding_result_from_msg(state["grounding"]) if state["grounding"] is not None else None
    )
    inverse = np.linalg.inv(camera_pose)
    path_pixels: list[tuple[float, float]] = []
    ee = state["ee"]
    fps = max(1, round(1.0 / control_dt))  # one frame per control step: real-time playback
    writer = imageio.get_writer(out / "episode.mp4", fps=fps, codec="libx264", quality=7, macro_block_size=8)
    seen: set[int] = set()
    for t_ns, msg in frames:
        if t_ns in seen:
            continue  # lock-step re-publications of the same observation
        seen.add(t_ns)
        frame = image_to_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)
        if grounding_result is not None:
            frame = draw_grounding(frame, grounding_result)
        for te, position in ee:
            if te == t_ns:
                p = inverse @ np.append(position, 1.0)
                if p[2] > 0:
                    u, v = (camera_k @ (p[:3] / p[2]))[:2]
                    path_pixels.append((u, v))
        writer.append_data(draw_path(frame, path_pixels))
    writer.close()

    stats = RollingStats(window=100000)
    for chunk in state["chunks"]:
        stats.add_stages({s.stage: s.seconds for s in chunk.stages}, prefix="policy/")
        stats.add("policy/inference", chunk.inference_latency)
    if state["grounding"] is not None:
        stats.add("grounding/model", state["grounding"].inference_time)
    latency = {k: {m: round(v, 5) for m, v in s.items()} for k, s in stats.summaries().items()}
    latency_plot(latency, out / "latency.png")
    summary = {
        "task": args.task,
        "instruction": instruction,
        "seed": args.seed,
        "robot": {
            "franka": "franka_panda (MuJoCo Menagerie model)",
            "widowx": "widowx_250_6dof (Interbotix wx250s URDF)",
        }[args.robot],
        "setup": graph.setup,
        "clock": args.clock,
        "checkpoint": model["checkpoint"] or "tiny factory model (cached)",
        "model": model,
        "model_note": model["note"],
        "cfg_scale": cfg_scale,  # None: policy_node's own default
        "executor_params": executor_params,  # {}: chunk_executor's YAML as it is
        "success": state["success"],
        "goal_result": result_reason,
        "policy_steps": len(state["chunks"]),
        "sim_steps": sim_steps,
        "sim_time_s": round(sim_seconds, 3),
        "wall_time_s": round(wall, 2),
        "sim_to_wall_ratio": round(sim_seconds / wall, 4),
        "frames": len(seen),
        "mcap_messages": recorder.count,
        "grounding": None
        if grounding_result is None
        else {
            "boxes": len(grounding_result.boxes),
            "points": len(grounding_result.points),
            "service_round_trip_s": round(ground_time, 3),
            "raw_text": state["grounding"].raw_text[:300],
        },
        "latency_s": latency,
        "rates_hz": {
            "executor_control": round(executor_rate, 2),
            "policy_chunks_per_sim_s": round(len(state["chunks"]) / max(sim_seconds, 1e-9), 2),
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def demo_cfg_scale(args: argparse.Namespace, model: dict) -> float | None:
    """The guidance scale the policy runs at: ``--cfg-scale``, else the one the model was evaluated at
    (its card's ``cfg_scale``: the shipped model's success rate holds at that scale), else None
    (policy_node's default)."""
    from internvla_core.policy_setup import card_node_parameters

    if args.cfg_scale is not None:
        return float(args.cfg_scale)
    card_scale = card_node_parameters(model).get("policy_node", {}).get("cfg_scale")
    return float(card_scale) if card_scale is not None else None


def demo_executor_params(args: argparse.Namespace, model: dict) -> dict:
    """chunk_executor parameters the model runs with: the card's ``executor`` (the settings its evaluation
    used), ``--gripper-commit-steps`` replacing the card's value; {} leaves the YAML as it is."""
    from internvla_core.policy_setup import card_node_parameters

    params = card_node_parameters(model).get("chunk_executor", {})
    if getattr(args, "gripper_commit_steps", None) is not None:
        params["gripper_commit_steps"] = int(args.gripper_commit_steps)
    return params


def model_identity(args: argparse.Namespace) -> dict:
    """Which model the demo runs and what it is: the checkpoint path handed to the policy node, the
    weights file it loads with its sha256, the training steps, and a one-line note for the summary."""
    import hashlib

    from .graphs import shipped_model

    if args.random_model:
        return {
            "checkpoint": "",
            "note": "untrained random tiny InternVLA-M1 (--random-model): the loop is real, the actions are "
            "noise; success is not expected",
        }
    shipped = shipped_model(args.robot, args.task)
    checkpoint = args.checkpoint or (str(shipped) if shipped is not None else "")
    if not checkpoint:
        return {
            "checkpoint": "",
            "note": f"no model trained here for {args.task} on the {args.robot} yet: the untrained random "
            "tiny InternVLA-M1 runs (the loop is real, the actions are noise); pass --checkpoint",
        }
    from internvla_core.model.policy import resolve_checkpoint, run_dir_of

    weights = resolve_checkpoint(checkpoint)
    identity = {
        "checkpoint": checkpoint,
        "weights": str(weights),
        "sha256": hashlib.sha256(Path(weights).read_bytes()).hexdigest(),
        "note": "user checkpoint",
    }
    card = run_dir_of(Path(weights)) / "model_card.json"  # a run dir or one of its checkpoint files
    if card.is_file():
        identity.update(json.loads(card.read_text()))
        identity["note"] = f"trained in this repository: {identity.get('summary', card.parent.name)}"
    return identity


def build_parser() -> argparse.ArgumentParser:
    from internvla_sim.tasks import TASKS

    from .graphs import CLOCK_MODES

    parser = argparse.ArgumentParser(
        prog="python -m internvla_bringup.demo",
        description=__doc__.split("\n")[0],
        epilog="Artefacts: episode.mp4, episode.mcap (+ metadata.yaml), summary.json, latency.png in --out. "
        "Exit status: 0 the goal ran its steps or the task succeeded, 1 failure (the graph did not start: "
        "one line names the node and why; or the goal ended early), 2 usage (bad arguments).",
    )
    parser.add_argument(
        "--task",
        default="pick_green",
        choices=list(TASKS),
        help="simulation task; each runs the model trained here for it on --robot, when there is one "
        "(default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="layout seed of the task (default: %(default)s)")
    parser.add_argument(
        "--robot", default="franka", choices=["franka", "widowx"], help="simulated arm (default: %(default)s)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=120,
        help="most policy steps (control steps: 10 Hz Franka, 5 Hz WidowX); the goal ends at success "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--clock",
        default="lockstep",
        choices=list(CLOCK_MODES),
        help="lockstep: sim time advances when the executor answered each step (reproducible); realtime: "
        "the sim follows the wall clock (default: %(default)s)",
    )
    # the camera the shipped model was trained on renders 224 x 224 (the data engine's default)
    parser.add_argument(
        "--width", type=int, default=224, help="camera image width [px] (default: %(default)s)"
    )
    parser.add_argument(
        "--height", type=int, default=224, help="camera image height [px] (default: %(default)s)"
    )
    parser.add_argument(
        "--checkpoint",
        default="",
        help="a run dir or .pt (default: the model trained here for --task on --robot)",
    )
    parser.add_argument(
        "--random-model", action="store_true", help="the untrained tiny factory model instead"
    )
    parser.add_argument(
        "--cfg-scale",
        type=float,
        help="classifier-free guidance scale (default: the scale the model's card says it was evaluated at, "
        "else policy_node's)",
    )
    parser.add_argument(
        "--gripper-commit-steps",
        type=int,
        help="chunk_executor's gripper_commit_steps (default: the model card's executor settings, else 0)",
    )
    parser.add_argument("--out", default="demo_out", help="directory of the artefacts (default: %(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="wall-clock limit of the goal [s] (default: %(default)s)"
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from .composition import StartError

    args = parse_args(argv)
    try:
        summary = run(args)
    except StartError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    keys = (
        "task",
        "model_note",
        "success",
        "goal_result",
        "policy_steps",
        "wall_time_s",
        "sim_to_wall_ratio",
    )
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    print(f"artefacts in {Path(args.out).resolve()}: episode.mp4, episode.mcap, summary.json, latency.png")
    # the goal ran to its step budget, or ended early because the sim reported success
    return 0 if summary["success"] or summary["policy_steps"] == args.steps else 1


if __name__ == "__main__":
    raise SystemExit(main())
