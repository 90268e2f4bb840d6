"""Scripted expert: solves each task from privileged object positions with Cartesian waypoints + IK.

It proves the tasks and their success checks are real (tests), and it records what an InternVLA-M1
training set holds per step: the end-effector delta [dx, dy, dz, droll, dpitch, dyaw] in the base frame
(metres / radians per control step, sxyz Euler of R_next · R_nowᵀ) and the gripper (1 open, 0 closed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .env import SimEnv

MAX_STEP = 0.03  # metres per control step
APPROACH = 0.12
GRASP_HEIGHT = 0.008  # TCP above the block centre: the fingertip pads then clear the table


def _rpy(rotation: np.ndarray) -> np.ndarray:
    pitch = -math.asin(max(-1.0, min(1.0, rotation[2, 0])))
    return np.array(
        [math.atan2(rotation[2, 1], rotation[2, 2]), pitch, math.atan2(rotation[1, 0], rotation[0, 0])]
    )


@dataclass
class ExpertEpisode:
    success: bool
    steps: int
    actions: list[np.ndarray] = field(default_factory=list)  # [dx, dy, dz, droll, dpitch, dyaw, gripper]


class ScriptedExpert:
    def __init__(self, env: SimEnv) -> None:
        from internvla_core.kinematics import IKSolver
        from internvla_core.robot_assets import robot_description

        self.env = env
        self.ik = IKSolver.from_description(robot_description(env.robot.description))
        # keep the home orientation (fingers pointing down); the WidowX, with 6 joints, can hold it
        # anywhere in its table-top layout (checked over the layout grid)
        self.down = self.ik.fk(np.array(env.robot.home))[:3, :3]
        self.tcp_offset = np.array(env.robot.tcp_offset)
        self.actions: list[np.ndarray] = []
        self.gripper = 1.0

    def _hand_target(self, tcp: np.ndarray) -> np.ndarray:
        target = np.eye(4)
        target[:3, :3] = self.down
        target[:3, 3] = tcp - self.down @ self.tcp_offset
        return target

    def _move(self, tcp: np.ndarray, max_steps: int = 60) -> None:
        """Straight TCP line to ``tcp`` at MAX_STEP per control step, then settle a few steps."""
        best = np.inf
        stalled = 0
        for _ in range(max_steps):
            now = self._tcp()
            delta = tcp - now
            distance = float(np.linalg.norm(delta))
            if distance < 0.004:
                break
            # position control sags under gravity by ~1 cm: stop when no more progress is made
            stalled = stalled + 1 if distance > best - 1e-3 else 0
            best = min(best, distance)
            if stalled >= 3 and distance < 0.02:
                break
            step = delta if np.linalg.norm(delta) <= MAX_STEP else delta * (MAX_STEP / np.linalg.norm(delta))
            self._command(self._hand_target(now + step))
        # integral correction of the static tracking error (gravity sag, contact): aim past the goal
        aim = np.array(tcp, dtype=np.float64)
        for _ in range(4):
            self._command(self._hand_target(aim))
            aim = aim + 0.7 * (tcp - self._tcp())

    def _tcp(self) -> np.ndarray:
        hand = self.env.hand_pose()
        return hand[:3, 3] + hand[:3, :3] @ self.tcp_offset

    def _command(self, hand_target: np.ndarray) -> None:
        env = self.env
        before = env.hand_pose()
        solution = self.ik.solve(env.arm_positions(), hand_target, max_iters=60)
        env.apply_joint_targets(solution.q, self.gripper)
        env.step()
        after = env.hand_pose()
        d_rpy = _rpy(after[:3, :3] @ before[:3, :3].T)
        self.actions.append(np.concatenate([after[:3, 3] - before[:3, 3], d_rpy, [self.gripper]]))

    def _grip(self, opening: float, steps: int = 6) -> None:
        self.gripper = opening
        hand = self.env.hand_pose()
        for _ in range(steps):
            self._command(hand)

    def _pick(self, name: str, lift: float = 0.15) -> None:
        block = self.env.object_positions()[name]
        self._grip(1.0, 1)
        self._move(block + [0, 0, APPROACH])
        self._move(block + [0, 0, GRASP_HEIGHT])
        self._grip(0.0)
        self._move(block + [0, 0, lift])

    def run(self) -> ExpertEpisode:
        env = self.env
        name = env.task.name
        if name == "red_on_plate":
            self._pick("red_block")
            plate = env.object_positions()["plate"]
            self._move(plate + [0, 0, 0.12])
            self._move(plate + [0, 0, 0.05])
            self._grip(1.0)
            self._move(plate + [0, 0, 0.15])
        elif name == "pick_green":
            self._pick("green_block")
            self._grip(0.0, 5)
        elif name == "push_blue_left":
            block = env.object_positions()["blue_block"]
            self._grip(0.0, 2)
            start = block + [0.0, -0.06, 0.0]
            self._move(start + [0, 0, APPROACH])
            self._move(start + [0, 0, 0.005])
            self._move(start + [0, 0.18, 0.005])
            self._move(start + [0, 0.18, APPROACH])
        else:  # pragma: no cover - every task in TASKS has a script
            raise ValueError(f"no script for task {name}")
        return ExpertEpisode(env.success(), env.steps, self.actions)
