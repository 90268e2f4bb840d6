"""Policy-node numbers: observation-to-chunk latency and the node's overhead over a bare core call.

    source scripts/env.sh && python bench/bench_policy.py [--chunks 30] [--model mid]

1. bare core: ``policy.predict_action`` on a 224x224 image, median of N calls (same process, same
   model, torch threads as the node sets them);
2. through ROS: a camera publishes at 20 Hz, policy_node runs one goal; per chunk we take
   obs stamp -> chunk received (what the executor sees), the node's own inference time, and the
   receive time minus the inference end (publish + DDS transport). Obs->chunk also contains the age of
   the newest image when inference starts (the node always takes the newest image, up to one camera
   period old).
The ratio (node inference + publish/transport) / bare core is the ROS overhead per call
(target <= 1.02);
3. ROS round trip: send an action goal (max_steps 1) -> first chunk received, N goals, vs one bare
   call (includes goal acceptance, the image conversion and the node's bookkeeping).
4. observation -> first command: chunk_executor (ensemble mode, joint_trajectory backend, WidowX IK,
   the embodiment's 5 Hz control rate) in the same process; per goal, the first chunk's observation
   stamp -> the first JointTrajectory that is not a hold (includes waiting for the next control tick:
   up to one 200 ms period), and chunk received -> that command.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np


def main() -> None:
    import rclpy
    import torch
    from rclpy.action import ActionClient
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from internvla_core.image_conversion import rgb_to_image_fields
    from internvla_msgs.action import ExecuteInstruction
    from internvla_msgs.msg import ActionChunk
    from internvla_policy.policy_node import PolicyNode

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=30)
    parser.add_argument("--goals", type=int, default=10)
    parser.add_argument(
        "--model",
        choices=["tiny", "mid"],
        default="tiny",
        help="tiny (1.4M params, ~35 ms) or mid (58M params, ~0.45 s): the node's fixed cost is a few ms",
    )
    args = parser.parse_args()

    from internvla_core.model.tiny import MID_SPEC, TinySpec, tiny_checkpoint

    checkpoint = str(tiny_checkpoint(spec=MID_SPEC if args.model == "mid" else TinySpec()))
    context = Context()
    rclpy.init(args=[], context=context)
    policy_node = PolicyNode(
        context=context,
        parameter_overrides=[Parameter("seed", value=0), Parameter("checkpoint", value=checkpoint)],
    )
    peer = Node("bench_peer", context=context)
    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    image_pub = peer.create_publisher(Image, "camera/image_raw", 2)

    def camera() -> None:
        msg = Image(**rgb_to_image_fields(rgb))
        msg.header.stamp = peer.get_clock().now().to_msg()
        image_pub.publish(msg)

    peer.create_timer(0.05, camera)

    # the executor of part 4 (activated only there); its robot state comes from the peer at 50 Hz
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from internvla_core.robot_assets import robot_description
    from internvla_policy.chunk_executor_node import ChunkExecutorNode

    widowx = robot_description("widowx")
    executor_node = ChunkExecutorNode(
        context=context,
        parameter_overrides=[
            Parameter("robot", value="widowx"),
            Parameter("dry_run", value=False),
            Parameter("workspace_min", value=[0.0, -0.5, 0.0]),
            Parameter("workspace_max", value=[0.6, 0.5, 0.6]),
        ],
    )
    state_pub = peer.create_publisher(JointState, "joint_states", 10)

    def joint_states() -> None:
        msg = JointState(name=list(widowx.arm_joints), position=list(widowx.home))
        msg.header.stamp = peer.get_clock().now().to_msg()
        state_pub.publish(msg)

    peer.create_timer(0.02, joint_states)
    moves: list[float] = []  # receive times of commands that are not holds (holds repeat the home pose)
    peer.create_subscription(
        JointTrajectory,
        "arm_controller/joint_trajectory",
        lambda m: (
            np.max(np.abs(np.subtract(m.points[0].positions, widowx.home))) > 1e-6
            and moves.append(time.time())
        ),
        10,
    )
    received: list[tuple[float, ActionChunk]] = []
    peer.create_subscription(  # stop chunks (rows 0, the end of a goal) are not inference results
        ActionChunk, "action_chunk", lambda m: m.rows and received.append((time.time(), m)), 100
    )
    client = ActionClient(peer, ExecuteInstruction, "execute_instruction")  # before spinning (rclpy race)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(policy_node)
    executor.add_node(executor_node)
    executor.add_node(peer)
    threading.Thread(target=executor.spin, daemon=True).start()
    policy_node.trigger_configure()
    policy_node.trigger_activate()

    # 1. bare core calls (the node is idle: no goal yet)
    model = policy_node.model.policy  # the local policy the node loaded on configure

    bare_stages: dict[str, list[float]] = {}

    def bare_calls(n: int) -> list[float]:
        times = []
        for i in range(n + 2):
            t0 = time.perf_counter()
            pred = model.predict_action([rgb], "put the carrot on the plate", unnorm_key="oxe_bridge", seed=i)
            if i >= 2:
                times.append(time.perf_counter() - t0)
                for stage, seconds in pred.stages.items():
                    bare_stages.setdefault(stage, []).append(seconds)
        return times

    bare = bare_calls(args.chunks)

    # 2. through ROS
    client.wait_for_server(timeout_sec=10)

    def wait(condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.001)
        return condition()

    goal_future = client.send_goal_async(
        ExecuteInstruction.Goal(instruction="put the carrot on the plate", max_steps=args.chunks + 2)
    )
    wait(lambda: len(received) >= args.chunks + 2, 300)
    wait(goal_future.done, 10)
    wait(goal_future.result().get_result_async().done, 30)
    streamed = list(received)

    # 3. goal -> first chunk
    round_trips = []
    for _ in range(args.goals):
        received.clear()
        t_send = time.time()
        future = client.send_goal_async(
            ExecuteInstruction.Goal(instruction="put the carrot on the plate", max_steps=1)
        )
        if not wait(lambda: received, 60):
            break
        round_trips.append(received[0][0] - t_send)
        wait(future.done, 10)
        wait(future.result().get_result_async().done, 30)
    # 4. observation -> first command
    executor_node.trigger_configure()
    executor_node.trigger_activate()
    obs_to_command, chunk_to_command = [], []
    for _ in range(args.goals):
        received.clear()
        moves.clear()
        future = client.send_goal_async(
            ExecuteInstruction.Goal(instruction="put the carrot on the plate", max_steps=1000)
        )
        if not wait(lambda: received, 60) or not wait(future.done, 10):
            break
        t_chunk, first = received[0]
        if wait(lambda t_chunk=t_chunk: any(t >= t_chunk for t in moves), 5):
            t_move = next(t for t in moves if t >= t_chunk)
            obs = first.observation_stamp.sec + first.observation_stamp.nanosec * 1e-9
            obs_to_command.append(t_move - obs)
            chunk_to_command.append(t_move - t_chunk)
        handle = future.result()
        cancelled = handle.cancel_goal_async()
        wait(cancelled.done, 10)
        wait(handle.get_result_async().done, 30)
        time.sleep(0.3)
    executor_node.trigger_deactivate()
    bare_after = bare_calls(args.chunks)  # same process state after the ROS part: drift check
    obs_to_chunk, inference, transport, model_total = [], [], [], []
    node_stages: dict[str, list[float]] = {}
    for t_recv, msg in streamed[2:]:
        for stage in msg.stages:
            node_stages.setdefault(stage.stage, []).append(stage.seconds)
        obs = msg.observation_stamp.sec + msg.observation_stamp.nanosec * 1e-9
        sent = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        obs_to_chunk.append(t_recv - obs)
        inference.append(msg.inference_latency)
        model_total.append(next(s.seconds for s in msg.stages if s.stage == "total"))
        transport.append(t_recv - sent)
    executor.shutdown()
    policy_node.destroy_node()
    executor_node.destroy_node()
    peer.destroy_node()
    rclpy.shutdown(context=context)

    med = statistics.median
    print(f"{args.model} model, 224x224, torch threads {torch.get_num_threads()}, {len(inference)} chunks:")
    print(
        f"  bare core predict_action      {1e3 * med(bare):7.1f} ms (after the ROS part {1e3 * med(bare_after):.1f})"
    )
    print(f"  node: model's own total       {1e3 * med(model_total):7.1f} ms")
    print(f"  node inference (same call)    {1e3 * med(inference):7.1f} ms")
    print(f"  publish + transport           {1e3 * med(transport):7.2f} ms")
    print(
        f"  obs stamp -> chunk received   {1e3 * med(obs_to_chunk):7.1f} ms (p95 {1e3 * sorted(obs_to_chunk)[int(0.95 * (len(obs_to_chunk) - 1))]:.1f})"
    )
    print(
        f"  ratio (inference + transport) / bare = {(med(inference) + med(transport)) / med(bare):.3f}  (target <= 1.02)"
    )
    print("  per stage, median ms (bare / in node):")
    for stage, values in bare_stages.items():
        if stage in node_stages:
            print(f"    {stage:12s} {1e3 * med(values):8.1f} / {1e3 * med(node_stages[stage]):8.1f}")
    if round_trips:
        print(
            f"  goal sent -> first chunk      {1e3 * med(round_trips):7.1f} ms over {len(round_trips)} goals "
            f"(ratio to bare {med(round_trips) / med(bare):.3f})"
        )
    if obs_to_command:
        print(
            f"  obs stamp -> first command    {1e3 * med(obs_to_command):7.1f} ms (max {1e3 * max(obs_to_command):.1f}) "
            f"over {len(obs_to_command)} goals; chunk received -> command {1e3 * med(chunk_to_command):.1f} ms "
            f"median ({1e3 * min(chunk_to_command):.1f}-{1e3 * max(chunk_to_command):.1f}: the wait for the next "
            "5 Hz control tick)"
        )


if __name__ == "__main__":
    main()
