"""Executor timing: control-period jitter at 100 Hz while a torch model infers, in one process or two.

    source scripts/env.sh && python bench/bench_executor.py [--seconds 8]
        [--load none|transformer|policy|separate|all] [--execution stream|trajectory|both] [--thread-priority 50]

Runs chunk_executor (its control thread at 100 Hz with ``thread_priority``, chunk mode, franka_real with
pinocchio IK on the bundled Panda, dry_run), fed with joint_states at 50 Hz and 16-row chunks every
100 ms, plus one of these loads in the SAME process:
  none         nothing else (the floor of this machine),
  transformer  a thread running a small torch TransformerEncoder forward loop (4 layers, d=256,
               sequence 256), torch limited to cores - 1 threads,
  policy       policy_node with the tiny model, a 20 Hz camera and one long goal (what the runner does;
               its chunks replace the feeder's).
  separate     the same policy load, but chunk_executor (with its joint_states and chunk feeders) in a
               process of its own, its callback threads at SCHED_FIFO too, as chunk_executor's main() does
               under ``internvla-run --executor-process separate`` / ``ros2 launch``; the child (this
               script with --child-executor) reports its periods as one JSON line.
Each load runs per execution: ``stream`` (chunk_trajectory false: IK and one point every tick) and
``trajectory`` (each chunk planned within plan_budget of a tick and sent as one trajectory).
Prints |period - 10 ms| percentiles of the control thread's wake-ups (the executor's own RateMeter),
the achieved rate, the overruns and the per-tick core cost. Timings are printed, never asserted (they
depend on the machine's load).
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


def run(
    load: str,
    seconds: float,
    priority: int,
    trajectory: bool,
    executor_here: bool = True,
    as_json: bool = False,
) -> None:
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

    if as_json:  # the executor's own process: its callback threads as in chunk_executor's main()
        from internvla_policy.executor_ros import realtime_spin_threads

        realtime_spin_threads(priority)  # threads created from here on inherit it
    context = Context()
    rclpy.init(args=[], context=context)
    params = [
        Parameter("embodiment", value="franka_real"),
        Parameter("mode", value="chunk"),
        Parameter("control_rate_hz", value=100.0),
        Parameter("dry_run", value=True),
        Parameter("watchdog_timeout", value=60.0),
        Parameter("thread_priority", value=priority),
        # stream: one single-point trajectory per tick (IK every tick); trajectory: each chunk planned
        # (IK per row, within plan_budget of each tick) and sent as one multi-point trajectory
        Parameter("chunk_trajectory", value=trajectory),
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
    else:  # a model's stream: 16-row chunks (160 ms at 100 Hz) every 100 ms, a slow sway along x
        while chunk_pub.get_subscription_count() == 0:
            time.sleep(0.01)

        def publish_chunk() -> None:
            now = peer.get_clock().now()
            t = now.nanoseconds * 1e-9 + 0.01 * np.arange(16)
            chunk = np.zeros((16, 7))
            chunk[:, 0] = 1e-4 * np.sin(2.0 * t)
            chunk[:, 6] = 1.0
            msg = ActionChunk(embodiment="franka_real", rows=16, cols=7, data=chunk.ravel().tolist())
            msg.observation_stamp = msg.header.stamp = now.to_msg()
            chunk_pub.publish(msg)

        peer.create_timer(0.1, publish_chunk)
        if load == "transformer":
            load_thread = threading.Thread(target=transformer_load, args=(stop, counter), daemon=True)
            load_thread.start()
    time.sleep(1.0)  # settle: skip start-up periods
    if executor_node is None:  # separate arrangement: the executor runs (and measures) in a child process
        time.sleep(3.0)  # the goal's first inferences are under way
        started = time.perf_counter()
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child-executor",
                "--seconds",
                str(seconds),
                "--thread-priority",
                str(priority),
            ],
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
            print(f"  control thread: {r['scheduling']}, {r['overruns']} overruns")
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
        loop = executor_node.control_loop
        fifo = "SCHED_FIFO" if loop.priority > 0 and not loop.priority_error else "normal scheduling"
        if loop.priority_error:
            fifo += f" ({loop.priority_error})"
        if as_json:
            stats = {"p50": percentile(dev, 50), "p99": percentile(dev, 99), "max": max(dev)}
            rate = executor_node.rate_meter.rate()
            print(
                json.dumps(
                    {
                        "seconds": elapsed,
                        "ticks": len(periods) + 1,
                        "rate": rate,
                        "held": held,
                        "scheduling": fifo,
                        "overruns": loop.overruns,
                        **stats,
                    }
                )
            )
        else:
            print(f"load={load}: 100 Hz control loop for {elapsed:.1f} s")
            print(f"  ticks {len(periods) + 1}  rate {executor_node.rate_meter.rate():.1f} Hz")
            print(
                f"  held ticks since start {held} (last reason: {executor_node.report.last_hold_reason or '-'})"
            )
            print(f"  control thread: {fifo}, {loop.overruns} overruns")
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
    parser.add_argument(
        "--thread-priority",
        type=int,
        default=50,
        help="the executor's thread_priority (SCHED_FIFO; 0 = normal scheduling); 50 as on a real robot",
    )
    parser.add_argument(
        "--execution",
        choices=["stream", "trajectory", "both"],
        default="both",
        help="stream: chunk_trajectory false (one point per tick); trajectory: one planned trajectory per chunk",
    )
    parser.add_argument("--child-executor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_executor:  # the separate arrangement's executor process: one JSON line on stdout
        run("none", args.seconds, args.thread_priority, args.execution == "trajectory", as_json=True)
        return
    print(
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at start, "
        f"executor thread_priority {args.thread_priority}"
    )
    core_tick_cost()
    executions = ("stream", "trajectory") if args.execution == "both" else (args.execution,)
    for execution in executions:
        print(f"== execution: {execution}")
        for load in ("none", "transformer", "policy", "separate") if args.load == "all" else (args.load,):
            trajectory = execution == "trajectory"
            if load == "separate":
                run("policy", args.seconds, args.thread_priority, trajectory, executor_here=False)
            else:
                run(load, args.seconds, args.thread_priority, trajectory)


if __name__ == "__main__":
    main()
