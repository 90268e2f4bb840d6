"""Grounding numbers: ROS service round trip vs the bare core call, and image conversion per frame.

    source scripts/env.sh && python bench/bench_grounding.py [--repeats 20]

Targets from the perception issue: service / core <= 1.02; conversion < 1 ms per 640x480 frame.
Both calls run the same tiny model on the same image with the same instruction (greedy decoding, so
the model work is identical); the difference is ROS transport, conversion, drawing and publishing.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np


def bench_conversion(repeats: int = 200) -> dict[str, float]:
    from internvla_core.image_conversion import image_to_depth_m, image_to_rgb

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    cases = {
        "rgb8": (480, 640, "rgb8", 0, 640 * 3, rgb.tobytes()),
        "bgr8": (480, 640, "bgr8", 0, 640 * 3, rgb.tobytes()),
        "rgb8_padded": (480, 640, "rgb8", 0, 640 * 3 + 64, np.zeros((480, 640 * 3 + 64), np.uint8).tobytes()),
        "16UC1_depth": (
            480,
            640,
            "16UC1",
            0,
            640 * 2,
            rng.integers(0, 5000, (480, 640), dtype=np.uint16).tobytes(),
        ),
        "32FC1_depth": (
            480,
            640,
            "32FC1",
            0,
            640 * 4,
            rng.uniform(0, 3, (480, 640)).astype(np.float32).tobytes(),
        ),
    }
    out = {}
    for name, fields in cases.items():
        fn = image_to_depth_m if "depth" in name else image_to_rgb
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*fields)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times) * 1e3
    return out


def bench_round_trip(repeats: int) -> tuple[float, float]:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from internvla_core.image_conversion import rgb_to_image_fields
    from internvla_msgs.srv import Ground
    from internvla_perception.grounding_node import GroundingNode

    context = Context()
    rclpy.init(args=[], context=context)
    node = GroundingNode(context=context)
    client_node = Node("bench_client", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(client_node)
    threading.Thread(target=executor.spin, daemon=True).start()
    node.trigger_configure()
    node.trigger_activate()
    rgb = np.random.default_rng(1).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    image = Image(**rgb_to_image_fields(rgb))
    client = client_node.create_client(Ground, "ground")
    client.wait_for_service(timeout_sec=10)
    policy = node.policy
    kw = {"kinds": ("box",), "max_new_tokens": node.live.max_new_tokens}
    core, ros = [], []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        policy.ground(rgb, "the red block", **kw)
        t_core = time.perf_counter() - t0
        t0 = time.perf_counter()
        future = client.call_async(Ground.Request(instruction="the red block", kinds=["box"], image=image))
        while not future.done():
            time.sleep(0.0005)
        t_ros = time.perf_counter() - t0
        if i >= 2:  # warm-up
            core.append(t_core)
            ros.append(t_ros)
    executor.shutdown()
    node.destroy_node()
    client_node.destroy_node()
    rclpy.shutdown(context=context)
    return statistics.median(core), statistics.median(ros)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print("image conversion, 640x480, median ms per frame (target < 1 ms):")
    for name, ms in bench_conversion().items():
        print(f"  {name:14s} {ms:7.3f} ms")
    core, ros = bench_round_trip(args.repeats)
    print(f"grounding (tiny model, 640x480, box), median of {args.repeats}:")
    print(f"  core call      {core * 1e3:8.1f} ms")
    print(f"  ROS service    {ros * 1e3:8.1f} ms")
    print(f"  ratio          {ros / core:8.3f}  (target <= 1.02)")


if __name__ == "__main__":
    main()
