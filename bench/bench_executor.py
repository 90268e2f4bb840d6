"""Executor timing: control-period jitter at 100 Hz while the policy infers in the same process.

    source scripts/env.sh && python bench/bench_executor.py [--seconds 8]

Runs chunk_executor (timer at 100 Hz, chunk mode, dry_run) and policy_node (tiny model, a camera at
20 Hz, one long goal) in ONE process with a multi-threaded executor, and prints |period - 10 ms|
percentiles measured inside the control callback, plus the observation-to-first-command latency.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np


def main() -> None:
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    from internvla_core.image_conversion import rgb_to_image_fields
    from internvla_core.latency import percentile
    from internvla_msgs.action import ExecuteInstruction
    from internvla_msgs.msg import ActionChunk
    from internvla_policy.chunk_executor_node import ChunkExecutorNode
    from internvla_policy.policy_node import PolicyNode

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()

    context = Context()
    rclpy.init(context=context)
    params = [
        Parameter("embodiment", value="franka_real"),
        Parameter("mode", value="chunk"),
        Parameter("control_rate_hz", value=100.0),
        Parameter("dry_run", value=True),
        Parameter("watchdog_timeout", value=2.0),
    ]
    executor_node = ChunkExecutorNode(context=context, parameter_overrides=params)
    policy = PolicyNode(
        context=context,
        parameter_overrides=[
            Parameter("embodiment", value="franka_real"),
            Parameter("max_steps", value=100000),
        ],
    )
    peer = Node("bench_peer", context=context)
    image_pub = peer.create_publisher(Image, "camera/image_raw", 2)
    joint_pub = peer.create_publisher(JointState, "joint_states", 10)
    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    home = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]

    def publish_inputs() -> None:
        now = peer.get_clock().now().to_msg()
        msg = Image(**rgb_to_image_fields(rgb))
        msg.header.stamp = now
        image_pub.publish(msg)
        state = JointState(name=[f"joint{i}" for i in range(1, 8)], position=home)
        state.header.stamp = now
        joint_pub.publish(state)

    peer.create_timer(0.05, publish_inputs)
    first: dict[str, float] = {}
    peer.create_subscription(
        ActionChunk, "action_chunk", lambda m: first.setdefault("chunk", time.perf_counter()), 10
    )
    peer.create_subscription(
        JointTrajectory,
        "executor/preview",
        lambda m: first.setdefault("command", time.perf_counter()) if "chunk" in first else None,
        10,
    )

    # the control node gets an executor of its own thread (as the runner does): Python work elsewhere
    # then only competes for the GIL, not for executor threads
    control_exec = SingleThreadedExecutor(context=context)
    control_exec.add_node(executor_node)
    other_exec = MultiThreadedExecutor(num_threads=4, context=context)
    other_exec.add_node(policy)
    other_exec.add_node(peer)
    threads = [threading.Thread(target=e.spin, daemon=True) for e in (control_exec, other_exec)]
    for t in threads:
        t.start()
    executor_node.trigger_configure()
    executor_node.trigger_activate()
    policy.trigger_configure()
    policy.trigger_activate()
    client = ActionClient(peer, ExecuteInstruction, "execute_instruction")
    client.wait_for_server(timeout_sec=10)
    t_goal = time.perf_counter()
    client.send_goal_async(ExecuteInstruction.Goal(instruction="put the carrot on the plate"))
    time.sleep(args.seconds)
    periods = executor_node.rate_meter.periods()
    dev = [abs(p - 0.01) * 1e3 for p in periods[50:]]
    stats = policy.stats.summaries()
    print(f"control loop 100 Hz for {args.seconds:.0f} s while the tiny policy infers in the same process:")
    print(f"  ticks {len(periods)}  rate {executor_node.rate_meter.rate():.1f} Hz")
    print(
        f"  |period - 10 ms|: p50 {percentile(dev, 50):.3f} ms  p99 {percentile(dev, 99):.3f} ms  max {max(dev):.3f} ms"
    )
    print(f"  inference total p50 {1e3 * stats['total']['p50']:.1f} ms ({stats['total']['count']} chunks)")
    if "chunk" in first and "command" in first:
        print(
            f"  goal -> first chunk {1e3 * (first['chunk'] - t_goal):.1f} ms; first chunk -> first command {1e3 * (first['command'] - first['chunk']):.1f} ms"
        )
    other_exec.shutdown()
    control_exec.shutdown()
    for node in (executor_node, policy, peer):
        node.destroy_node()
    rclpy.shutdown(context=context)


if __name__ == "__main__":
    main()
