"""Expert demonstrations replayed open loop through the ROS graph: success next to the expert's own.

    source scripts/env.sh && python bench/replay_expert_ros.py [--robot franka widowx]
        [--tasks red_on_plate pick_green push_blue_left] [--seeds 30] [--seed-start 1000000]
        [--drop-pauses all|grasp|settle|carry]

For every (robot, task, seed): the scripted expert runs on a SimEnv without ROS and records its
commanded actions (``internvla_sim.expert``: deltas between successive commanded targets in the
embodiment's frame). Then the setup's simulated graph (``sim_franka`` / ``sim_widowx``) is composed in
this process, without the policy and grounding nodes: a replay node answers each lock-step observation
with a one-row ActionChunk holding the expert's action for that step, stamped with the observation; the
graph's own chunk_executor (ensemble mode, IK, safety limits, setpoint integration) turns it into
JointTrajectory commands for the sim node, whose JointTrajectoryController emulation moves the arm.
The episode's success is the sim node's own check after the last step.

Prints, per robot and task: expert successes, replay successes among them (Wilson 95 % intervals), and
the episodes where the replay failed. Numbers are printed, never asserted. One composition per episode
(node start-up dominates: a few seconds each on 2 cores).
"""

from __future__ import annotations

import argparse
import math
import threading
import time

import numpy as np


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def expert_actions(robot: str, task: str, seed: int, drop_pauses: str | None = None):
    """(success, actions) of the scripted expert on (robot, task, seed), no rendering. ``drop_pauses``:
    without the pause frames of that kind, as stage 2 trains on them (``training.data.pause_frames``)."""
    from internvla_core.embodiments import get_embodiment
    from internvla_sim.data_engine import measured_state_ee
    from internvla_sim.env import SimEnv
    from internvla_sim.expert import EMBODIMENTS, ScriptedExpert

    embodiment = get_embodiment(EMBODIMENTS[robot])
    env = SimEnv(task, seed, embodiment.control_period, 64, 48, False, robot)
    states: list[np.ndarray] = []
    result = ScriptedExpert(env, observe=lambda e: states.append(measured_state_ee(e))).run()
    env.close()
    actions = np.array(result.actions)
    if drop_pauses and len(actions):
        from internvla_learning.training.data import pause_frames

        actions = actions[~pause_frames(actions, np.array(states), drop_pauses)]
    return result.success, actions


class Replayer:
    """Answers each new joint_states stamp (one lock-step observation) with the next expert action."""

    def __init__(self, node, embodiment, actions: np.ndarray) -> None:
        from sensor_msgs.msg import JointState

        from internvla_msgs.msg import ActionChunk

        self.node, self.embodiment, self.actions = node, embodiment, actions
        self.ActionChunk = ActionChunk
        self.publisher = node.create_publisher(ActionChunk, "action_chunk", 10)
        self.answered: set[tuple[int, int]] = set()
        self.step = 0
        self.done = threading.Event()
        self.ready = threading.Event()  # set once the executor is active: earlier answers would be lost
        self.latest = None
        self._lock = threading.Lock()
        node.create_subscription(JointState, "joint_states", self._on_state, 10)

    def start(self) -> None:
        """Begin answering, with the observation the lock-step sim is waiting on (if it came already)."""
        self.ready.set()
        if self.latest is not None:
            self._on_state(self.latest)

    def _on_state(self, msg) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            self.latest = msg
            if not self.ready.is_set() or stamp in self.answered or self.done.is_set():
                return
            self.answered.add(stamp)
            if self.step >= len(self.actions):
                self.done.set()
                return
            action = self.actions[self.step]
            self.step += 1
        emb = self.embodiment
        chunk = self.ActionChunk(
            embodiment=emb.name, dt=emb.control_period, action_space=emb.action_space, command=0
        )
        chunk.header.stamp = msg.header.stamp
        chunk.header.frame_id = emb.reference_frame
        chunk.reference_frame = emb.reference_frame
        chunk.dimension_names = list(emb.dimension_names)
        chunk.rows, chunk.cols = 1, len(action)
        chunk.data = [float(v) for v in action]
        chunk.normalized_data = [0.0] * len(action)
        chunk.observation_stamp = msg.header.stamp
        chunk.sequence = self.step
        self.publisher.publish(chunk)


def replay_through_ros(robot: str, task: str, seed: int, actions: np.ndarray, timeout: float = 120.0) -> bool:
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import Bool

    from internvla_bringup.composition import Composition
    from internvla_bringup.graphs import GraphOptions, build_graph
    from internvla_core.embodiments import get_embodiment
    from internvla_sim.expert import EMBODIMENTS

    graph = build_graph(f"sim_{robot}", GraphOptions(task=task, seed=seed))
    context = Context()
    rclpy.init(args=[], context=context)
    composition = None
    try:
        sim_params = {"task": task, "seed": seed, "width": 64, "height": 48, "publish_depth": False}
        composition = Composition.create(
            graph, context, {"sim": sim_params}, skip=("policy_node", "grounding_node")
        )
        driver = Node("expert_replay", namespace=graph.namespace, context=context)
        replayer = Replayer(driver, get_embodiment(EMBODIMENTS[robot]), actions)
        success: list[bool] = []
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        driver.create_subscription(Bool, "task/success", lambda m: success.append(bool(m.data)), latched)
        composition.add_executors((driver,))
        composition.spin_in_background()
        failures = composition.activate()
        if failures:
            raise RuntimeError("; ".join(failures))
        executor = composition.nodes["chunk_executor"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (
            replayer.publisher.get_subscription_count() == 0
            or executor.core is None
            or executor.core.ik is None
        ):
            time.sleep(0.02)
        replayer.start()
        while not replayer.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        lost = executor.core.counters["holds"]
        if lost:
            print(f"  {robot} {task} seed {seed}: the executor held on {lost} observations", flush=True)
        return bool(composition.nodes["sim"].env.success())
    finally:
        if composition is not None:
            composition.shutdown_executors()
            composition.destroy()
        rclpy.shutdown(context=context)


def main() -> None:
    from internvla_learning.training.data import PAUSE_KINDS

    from internvla_sim.tasks import TASKS  # the one task registry

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robot", nargs="+", default=["franka", "widowx"], choices=["franka", "widowx"])
    parser.add_argument("--tasks", nargs="+", default=sorted(TASKS), choices=sorted(TASKS))
    parser.add_argument("--seeds", type=int, default=30, help="seeds per robot and task")
    parser.add_argument("--seed-start", type=int, default=1_000_000, help="first seed (evaluation range)")
    parser.add_argument(
        "--drop-pauses",
        choices=PAUSE_KINDS,
        help="replay the actions without these pause frames, as stage 2 --drop-pauses trains on them",
    )
    args = parser.parse_args()
    rows = []
    for robot in args.robot:
        for task in args.tasks:
            expert_ok = replay_ok = 0
            failed = []
            start = time.perf_counter()
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                ok, actions = expert_actions(robot, task, seed, args.drop_pauses)
                if not ok:
                    continue
                expert_ok += 1
                if replay_through_ros(robot, task, seed, actions):
                    replay_ok += 1
                else:
                    failed.append(seed)
            low, high = wilson(replay_ok, expert_ok)
            rows.append((robot, task, expert_ok, args.seeds, replay_ok, low, high, failed))
            print(
                f"{robot:7s} {task:15s} expert {expert_ok}/{args.seeds}  replayed through ROS "
                f"{replay_ok}/{expert_ok} [{low:.2f}, {high:.2f}]  failed seeds {failed}  "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    total_expert = sum(r[2] for r in rows)
    total_replay = sum(r[4] for r in rows)
    low, high = wilson(total_replay, total_expert)
    print(f"all: replay {total_replay}/{total_expert} of the expert's successes [{low:.3f}, {high:.3f}]")


if __name__ == "__main__":
    main()
