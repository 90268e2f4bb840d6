"""The smallest real end-to-end run available today: camera image → InternVLA-M1 → ROS messages.

What it does (one process, real rclpy on Fast DDS, DDS traffic on localhost):
1. builds (once, cached) the tiny InternVLA-M1 checkpoint with the model factory and loads it through
   the same code that loads released checkpoints;
2. a camera node publishes a synthetic table-top image on ``camera/image_raw``;
3. a model node takes the latest image on a worker thread (never in the subscription callback), asks the
   model where to act (``Grounding`` on ``grounding``) and how to act (``ActionChunk`` on
   ``action_chunk``, un-normalised with the WidowX/Bridge statistics);
4. a recorder node receives both and the demo writes ``demo_out/``: ``summary.json`` (checkpoint,
   per-stage latency p50/p95, counts), ``grounding.png`` (the image with the parsed grounding drawn) and
   ``action_chunks.csv``.

The tiny model is random and untrained: its grounding text is gibberish (so usually nothing is parsed)
and its actions are noise. The run proves the loop works and is measured, not that a task is solved.
The simulated-arm demo (MuJoCo, executor, video) replaces this once the simulator package lands.
"""

from __future__ import annotations

import argparse
import csv
import json
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_INSTRUCTION = "put the red block on the plate"


def synthetic_scene(
    width: int = 320, height: int = 240, seed: int = 0
) -> tuple[np.ndarray, dict[str, list[int]]]:
    """A table-top RGB image with a red block, a green block and a white plate; returns their boxes."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = (150, 120, 90)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    objects = {"plate": (235, 235, 235), "red block": (200, 30, 30), "green block": (40, 170, 60)}
    boxes: dict[str, list[int]] = {}
    for name, colour in objects.items():
        size = 60 if name == "plate" else 34
        x = int(rng.integers(10, width - size - 10))
        y = int(rng.integers(10, height - size - 10))
        image[y : y + size, x : x + size] = colour
        boxes[name] = [x, y, x + size, y + size]
    return image, boxes


def image_message(rgb: np.ndarray, stamp, frame_id: str):
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = "rgb8"
    msg.step = rgb.shape[1] * 3
    msg.data = rgb.tobytes()
    return msg


def message_to_rgb(msg) -> np.ndarray:
    if msg.encoding != "rgb8" or msg.step != msg.width * 3:
        raise ValueError(f"the demo model node expects packed rgb8, got {msg.encoding} step {msg.step}")
    return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width, 3)


def draw_grounding(rgb: np.ndarray, result) -> np.ndarray:
    import cv2

    canvas = rgb.copy()
    for box in result.boxes:
        cv2.rectangle(canvas, (int(box.x1), int(box.y1)), (int(box.x2), int(box.y2)), (255, 220, 0), 2)
        cv2.putText(canvas, box.label, (int(box.x1), max(10, int(box.y1) - 4)), 0, 0.4, (255, 220, 0), 1)
    for point in result.points:
        cv2.circle(canvas, (int(point.u), int(point.v)), 4, (0, 200, 255), -1)
    if result.empty:
        cv2.putText(canvas, "no grounding parsed (random tiny model)", (6, 16), 0, 0.4, (255, 255, 255), 1)
    return canvas


def run(args: argparse.Namespace) -> dict:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from tqdm import tqdm

    from internvla_core.embodiments import get_embodiment
    from internvla_core.latency import RollingStats
    from internvla_core.model import acquire, release, tiny_checkpoint
    from internvla_msgs.msg import ActionChunk, GroundedObject, GroundedPoint, Grounding, StageLatency

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint()
    policy = acquire(checkpoint, device="cpu")
    load_time = time.perf_counter() - t_start
    embodiment = get_embodiment(args.embodiment)
    unnorm_key = embodiment.resolve_unnorm_key(policy.unnorm_keys)
    scene, truth_boxes = synthetic_scene(seed=args.seed)

    context = Context()
    rclpy.init(context=context)
    camera = Node("demo_camera", context=context)
    model_node = Node("demo_model", context=context)
    recorder = Node("demo_recorder", context=context)
    image_pub = camera.create_publisher(Image, "camera/image_raw", 2)
    camera.create_timer(
        0.2, lambda: image_pub.publish(image_message(scene, camera.get_clock().now().to_msg(), "camera"))
    )

    latest: dict[str, Image] = {}
    new_image = threading.Event()

    def on_image(msg: Image) -> None:  # callbacks only store; inference runs on the worker below
        latest["image"] = msg
        new_image.set()

    model_node.create_subscription(Image, "camera/image_raw", on_image, 2)
    grounding_pub = model_node.create_publisher(Grounding, "grounding", 10)
    chunk_pub = model_node.create_publisher(ActionChunk, "action_chunk", 10)
    received: dict[str, list] = {"grounding": [], "action_chunk": []}
    recorder.create_subscription(Grounding, "grounding", received["grounding"].append, 10)
    recorder.create_subscription(ActionChunk, "action_chunk", received["action_chunk"].append, 10)

    stats = RollingStats(window=1000)
    stop = threading.Event()
    first_grounding: dict = {}

    def worker() -> None:
        sequence = 0
        while not stop.is_set() and sequence < args.steps:
            if not new_image.wait(timeout=0.5):
                continue
            new_image.clear()
            msg = latest["image"]
            rgb = message_to_rgb(msg)
            if sequence == 0:
                result = policy.ground(rgb, args.instruction, kinds=("box", "point"), max_new_tokens=24)
                stats.add("grounding_total", result.inference_time)
                first_grounding["result"] = result
                g = Grounding(header=msg.header, instruction=args.instruction, kind="box,point")
                g.image_width, g.image_height = msg.width, msg.height
                g.objects = [
                    GroundedObject(label=b.label, score=b.score, x1=b.x1, y1=b.y1, x2=b.x2, y2=b.y2)
                    for b in result.boxes
                ]
                g.points = [GroundedPoint(label=p.label, u=p.u, v=p.v) for p in result.points]
                g.raw_text = json.dumps(result.raw_text)
                g.inference_time = result.inference_time
                grounding_pub.publish(g)
            t0 = time.perf_counter()
            pred = policy.predict_action(
                [rgb], args.instruction, unnorm_key=unnorm_key, seed=args.seed + sequence, num_ddim_steps=10
            )
            chunk = ActionChunk(embodiment=embodiment.name, dt=embodiment.control_period)
            chunk.header.stamp = model_node.get_clock().now().to_msg()
            chunk.header.frame_id = embodiment.reference_frame
            chunk.action_space = embodiment.action_space
            chunk.dimension_names = list(embodiment.dimension_names)
            chunk.reference_frame = embodiment.reference_frame
            chunk.rows, chunk.cols = pred.actions.shape
            chunk.data = pred.actions.astype(float).ravel().tolist()
            chunk.normalized_data = pred.normalized.astype(float).ravel().tolist()
            chunk.observation_stamp = msg.header.stamp
            chunk.sequence = sequence
            chunk.inference_latency = time.perf_counter() - t0
            chunk.stages = [StageLatency(stage=k, seconds=float(v)) for k, v in pred.stages.items()]
            stats.add_stages(pred.stages)
            chunk_pub.publish(chunk)
            sequence += 1
            progress.update(1)

    executor = MultiThreadedExecutor(num_threads=3, context=context)
    for node in (camera, model_node, recorder):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    progress = tqdm(total=args.steps, desc="policy queries", unit="chunk")
    spinner.start()
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and len(received["action_chunk"]) < args.steps:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=30)
    progress.close()
    executor.shutdown()
    for node in (camera, model_node, recorder):
        node.destroy_node()
    rclpy.shutdown(context=context)
    spinner.join(timeout=5)
    release(policy)

    chunks = received["action_chunk"]
    result = first_grounding.get("result")
    import cv2

    if result is not None:
        cv2.imwrite(
            str(out_dir / "grounding.png"), cv2.cvtColor(draw_grounding(scene, result), cv2.COLOR_RGB2BGR)
        )
    with open(out_dir / "action_chunks.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sequence", "row", *embodiment.dimension_names])
        for chunk in chunks:
            rows = np.asarray(chunk.data).reshape(chunk.rows, chunk.cols)
            for i, row in enumerate(rows):
                writer.writerow([chunk.sequence, i, *[f"{v:.6f}" for v in row]])
    summary = {
        "what": "camera image -> InternVLA-M1 (grounding + action chunks) -> ROS topics, in one process",
        "checkpoint": str(checkpoint),
        "model": "tiny random InternVLA-M1 from the factory (untrained: grounding and actions are not meaningful)"
        if not args.checkpoint
        else "user checkpoint",
        "instruction": args.instruction,
        "embodiment": embodiment.name,
        "unnorm_key": unnorm_key,
        "scene_boxes_ground_truth": truth_boxes,
        "grounding": None
        if result is None
        else {
            "parsed_boxes": len(result.boxes),
            "parsed_points": len(result.points),
            "raw_text": result.raw_text,
            "error": result.error,
        },
        "chunks_received": len(chunks),
        "chunk_shape": [chunks[0].rows, chunks[0].cols] if chunks else None,
        "load_time_s": round(load_time, 3),
        "wall_time_s": round(time.perf_counter() - t_start, 3),
        "latency_s": {
            key: {k: round(v, 4) for k, v in s.items() if k in ("p50", "p95", "count")}
            for key, s in stats.summaries().items()
        },
        "task_success": "not evaluated: no simulator in this demo",
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo_out", help="output directory")
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    parser.add_argument("--steps", type=int, default=5, help="number of action chunks to produce")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embodiment", default="widowx_bridge")
    parser.add_argument(
        "--checkpoint", default="", help="a released checkpoint (.pt or run dir); empty = tiny"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit [s]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = run(args)
    print(
        json.dumps(
            {k: summary[k] for k in ("model", "chunks_received", "latency_s", "wall_time_s")}, indent=2
        )
    )
    print(f"artefacts in {Path(args.out).resolve()}")
    return 0 if summary["chunks_received"] == args.steps else 1


if __name__ == "__main__":
    raise SystemExit(main())
