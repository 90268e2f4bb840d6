"""Executor timing: control-period jitter at 100 Hz while a torch model infers, in one process or two.

    source scripts/env.sh && python bench/bench_executor.py [--seconds 8] [--load none|transformer|policy|separate|all]

Runs chunk_executor (timer at 100 Hz, chunk mode, franka_real with pinocchio IK on the bundled Panda,
dry_run) on a single-threaded executor of its own thread, fed with joint_states at 50 Hz and one long
chunk, plus one of these loads in the SAME process:
  none         nothing else (the floor of this machine),
  transformer  a thread running a small torch TransformerEncoder forward loop (4 layers, d=256,
               sequence 256), torch limited to cores - 1 threads,
  policy       policy_node with the tiny model, a 20 Hz camera and one long goal (what the runner does).
  separate     the same policy load, but chunk_executor (with its joint_states feeder) in a process of
               its own, as ``internvla-run --executor-process separate`` / ``ros2 launch`` run it; the child
               (this script with --child-executor) reports its periods as one JSON line.
Prints |period - 10 ms| percentiles measured by the executor's own RateMeter, the achieved rate and the
per-tick core cost. Timings are printed, never asserted (they depend on the machine's load).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

HOME = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]


def transformer_load(stop: threading.Event, counter: list[int]) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    layer = torch.nn.TransformerEncoderLayer(d_model=256, nhead=4, dim_feedforward=1024, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, num_layers=4).eval()
    x = torch.randn(1, 256, 256)
    with torch.inference_mode():
        while not stop.is_set():
            model(x)
            counter[0] += 1


def run(load: str, seconds: float, executor_here: bool = True, as_json: bool = False) -> None:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, JointState

    from internvla_core.image_conversion import rgb_to_image_fields
    from internvla_core.latency import percentile
    from internvla_msgs.msg import ActionChunk
    from internvla_policy.chunk_executor_node import ChunkExecutorNode

    context = Context()
    rclpy.init(context=context)
    params = [
        Parameter("embodiment", value="franka_real"),
        Parameter("mode", value="chunk"),
        Parameter("control_rate_hz", value=100.0),
        Parameter("dry_run", value=True),
        Parameter("watchdog_timeout", value=60.0),
        # per-tick streaming: the jitter of the control loop itself. With chunk_trajectory the arrival of
        # a chunk plans every row (IK per row) on the control thread: a 1,300-row chunk costs ~1 s there
        Parameter("chunk_trajectory", value=False),
    ]
    executor_node = ChunkExecutorNode(context=context, parameter_overrides=params) if executor_here else None
    peer = Node("bench_peer", context=context)
    joint_pub = peer.create_publisher(JointState, "joint_states", 10)
    image_pub = peer.create_publisher(Image, "camera/image_raw", 2)
    chunk_pub = peer.create_publisher(ActionChunk, "action_chunk", 10)
    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)

    def publish_inputs() -> None:
        now = peer.get_clock().now().to_msg()
        state = JointState(name=[f"joint{i}" for i in range(1, 8)], position=HOME)
        state.header.stamp = now
        joint_pub.publish(state)
        if load == "policy":
            msg = Image(**rgb_to_image_fields(rgb))
            msg.header.stamp = now
            image_pub.publish(msg)

    peer.create_timer(0.02 if load != "policy" else 0.05, publish_inputs)
    control_exec = SingleThreadedExecutor(context=context)
    if executor_node is not None:
        control_exec.add_node(executor_node)
    other_exec = MultiThreadedExecutor(num_threads=4, context=context)
    other_exec.add_node(peer)
    policy = None
    stop = threading.Event()
    counter = [0]
    load_thread = None
    if load == "policy":
        from internvla_policy.policy_node import PolicyNode

        policy = PolicyNode(
            context=context,
            parameter_overrides=[
                Parameter("embodiment", value="franka_real"),
                Parameter("max_steps", value=100000),
                Parameter("max_duration", value=3600.0),
            ],
        )
        other_exec.add_node(policy)
        from rclpy.action import ActionClient

        from internvla_msgs.action import ExecuteInstruction

        # built before spinning: rclpy's ActionClient registers itself before it creates its lock
        client = ActionClient(peer, ExecuteInstruction, "execute_instruction")
    threads = [threading.Thread(target=e.spin, daemon=True) for e in (control_exec, other_exec)]
    for t in threads:
        t.start()
    if executor_node is not None:
        executor_node.trigger_configure()
        executor_node.trigger_activate()
    if load == "policy":
        policy.trigger_configure()
        policy.trigger_activate()
        client.wait_for_server(timeout_sec=10)
        client.send_goal_async(ExecuteInstruction.Goal(instruction="put the carrot on the plate"))
    else:  # one long chunk keeps the executor commanding (IK every tick) for the whole run
        while chunk_pub.get_subscription_count() == 0:
            time.sleep(0.01)
        rows = int(seconds * 100) + 500
        chunk = np.zeros((rows, 7))
        chunk[:, 0] = 1e-4 * np.sin(np.arange(rows) / 50)
        chunk[:, 6] = 1.0
        msg = ActionChunk(embodiment="franka_real", rows=rows, cols=7, data=chunk.ravel().tolist())
        msg.observation_stamp = peer.get_clock().now().to_msg()
        chunk_pub.publish(msg)
        if load == "transformer":
            load_thread = threading.Thread(target=transformer_load, args=(stop, counter), daemon=True)
            load_thread.start()
    time.sleep(1.0)  # settle: skip start-up periods
    if executor_node is None:  # separate arrangement: the executor runs (and measures) in a child process
        time.sleep(3.0)  # the goal's first inferences are under way
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--child-executor", "--seconds", str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
        elapsed = time.perf_counter() - started
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if child.returncode != 0 or not lines:
            print(f"load=separate: the executor process failed ({child.returncode}): {child.stderr[-2000:]}")
        else:
            r = json.loads(lines[-1])
            print(
                f"load=separate (executor in its own process, policy load here): {r['seconds']:.1f} s measured"
            )
            print(f"  ticks {r['ticks']}  rate {r['rate']:.1f} Hz  held ticks {r['held']}")
            print(
                f"  |period - 10 ms|: p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  max {r['max']:.3f} ms "
                f"(the executor process's wall time, with start-up: {elapsed:.1f} s)"
            )
    else:
        executor_node.rate_meter = type(executor_node.rate_meter)(expected_period=0.01)
        started = time.perf_counter()
        forwards_before = counter[0]
        time.sleep(seconds)
        elapsed = time.perf_counter() - started
        periods = executor_node.rate_meter.periods()
        dev = [abs(p - 0.01) * 1e3 for p in periods]
        held = executor_node.core.counters["holds"]
        if as_json:
            stats = {"p50": percentile(dev, 50), "p99": percentile(dev, 99), "max": max(dev)}
            rate = executor_node.rate_meter.rate()
            print(
                json.dumps(
                    {"seconds": elapsed, "ticks": len(periods) + 1, "rate": rate, "held": held, **stats}
                )
            )
        else:
            print(f"load={load}: 100 Hz control loop for {elapsed:.1f} s")
            print(f"  ticks {len(periods) + 1}  rate {executor_node.rate_meter.rate():.1f} Hz")
            print(f"  held ticks since start {held} (last reason: {executor_node._last_hold_reason or '-'})")
            print(
                f"  |period - 10 ms|: p50 {percentile(dev, 50):.3f} ms  p99 {percentile(dev, 99):.3f} ms  "
                f"max {max(dev):.3f} ms"
            )
    if load == "transformer":
        print(f"  transformer forwards/s in the other thread: {(counter[0] - forwards_before) / elapsed:.1f}")
    if policy is not None and policy.stats.keys():
        stats = policy.stats.summaries()
        print(
            f"  policy inference total p50 {1e3 * stats['total']['p50']:.1f} ms ({stats['total']['count']} chunks)"
        )
    stop.set()
    if load_thread is not None:
        load_thread.join(timeout=10)
    if policy is not None:  # ends the goal: its loop holds an executor thread that shutdown() would wait for
        policy.trigger_deactivate()
    other_exec.shutdown()
    control_exec.shutdown()
    for t in threads:  # rclpy's shutdown() does not wait for a callback in flight: the spin threads do
        t.join(timeout=5)
    for node in (executor_node, peer, policy):
        if node is not None:
            node.destroy_node()
    rclpy.shutdown(context=context)


def core_tick_cost() -> None:
    """The pure executor step with IK, no ROS: what each tick costs in Python."""
    from internvla_core.embodiments import get_embodiment
    from internvla_core.executor_core import ExecutorConfig, ExecutorCore
    from internvla_core.kinematics import IKSolver
    from internvla_core.latency import percentile

    ik = IKSolver.panda()
    home = np.array(HOME)
    core = ExecutorCore(
        get_embodiment("franka_real"),
        ExecutorConfig(mode="chunk", control_period=0.01, watchdog_timeout=1e9),
        ik,
    )
    rng = np.random.default_rng(0)
    core.add_chunk(np.c_[rng.normal(0, 0.01, (2000, 6)), np.ones(2000)], 0.0, 0.0)
    costs = []
    for k in range(2000):
        start = time.perf_counter()
        core.tick(0.01 * k, ik.fk(home), home)
        costs.append((time.perf_counter() - start) * 1e3)
    print(
        f"core tick with IK (no ROS): p50 {percentile(costs, 50):.3f} ms  p99 {percentile(costs, 99):.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--load", choices=["none", "transformer", "policy", "separate", "all"], default="all")
    parser.add_argument("--child-executor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_executor:  # the separate arrangement's executor process: one JSON line on stdout
        run("none", args.seconds, as_json=True)
        return
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at start")
    core_tick_cost()
    for load in ("none", "transformer", "policy", "separate") if args.load == "all" else (args.load,):
        if load == "separate":
            run("policy", args.seconds, executor_here=False)
        else:
            run(load, args.seconds)


if __name__ == "__main__":
    main()
