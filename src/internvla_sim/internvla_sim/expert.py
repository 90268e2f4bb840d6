"""Scripted expert: solves each task from privileged object positions with Cartesian waypoints + IK.

It proves the tasks and their success checks are real (tests), and it records, per control step, what it
COMMANDED (the form of a training set; spec learning.md: deltas of achieved motion fall ~1 cm short
under gravity and do not replay):

- ``joint_commands[t]`` = the arm joint targets sent at step t (the IK solution), then the gripper
  command (1 open, 0 closed);
- ``actions[t]`` = ``delta_between(T_cmd[t-1], T_cmd[t], frame)`` + gripper, where ``T_cmd[t]`` =
  ``IKSolver.fk(q_cmd[t])`` of the same IK model the executor uses, ``T_cmd[-1]`` = fk of the measured
  joints at the start, and ``frame`` the embodiment's ``reference_frame`` (Franka ``franka_real``:
  "tool", WidowX ``widowx_bridge``: "base"). The MCAP converter computes actions from recorded
  JointTrajectory commands the same way.

``observe`` (optional) is called with the environment BEFORE each command is applied: observation t
precedes action t.

``perturb`` (DART-style data, Laskey et al. 2017): while the arm travels through free space to above a
grasp, place or push, the target actually sent is the expert's target plus a slowly drifting offset (an
Ornstein-Uhlenbeck process of stationary std ``perturb`` metres per axis, z at half, that fades out within
2-8 cm of the waypoint; descents, grasps and lifts stay clean). The recorded action is still the expert's: the
delta from the last target actually commanded to the target the expert wanted, i.e. the correction. A
policy trained only on perfect approaches never sees a gripper a few centimetres off its path, and in
closed loop it drifts there and does not come back (TRAINING.md). ``joint_commands`` then hold the
expert's IK solution (the label), not the perturbed one that was sent.

``perturb_descent`` also perturbs the descent onto a grasp, fading out within 2-8 cm of the grasp point:
a policy that arrives above the block 1-2 cm off (TRAINING.md, sixth round) otherwise never saw the
expert correct sideways on the way down, since every clean descent is a vertical line. The descent to
the start of a push is perturbed the same way (TRAINING.md, twelfth round: a push policy that reached
the table 1-2 cm off the expert's line never pushed); the stroke itself stays clean.

``grasp_rise`` (metres) turns the still hold after a grasp into the start of the lift: once the fingers
rest on the object, each further step of the hold rises ``k * grasp_rise`` (k = 1, 2, ...). The default
expert (0) holds still for 6 steps, which records one picture (arm and fingers at rest) labelled "hold"
four times and "lift" once; a policy that sees no time then holds for ever (TRAINING.md, eighth round).
With a rise, every step of the hold is a different picture with its own, consistent label.

``miss_first`` (a :class:`GraspMiss` drawn from a generator) records a recovery instead of a clean pick: the expert first grasps
beside the object on purpose (sideways by ``GraspMiss.offset``, where the closing fingers meet nothing),
closes, rises ``GraspMiss.rise``, and only then starts recording: the episode's first frame is the
picture a policy sees after its own missed grasp (fingers shut on nothing, the block still on the table),
and its labels open the gripper, go back above the block and pick it. A policy trained only on clean
picks never saw that picture and lifts its empty gripper for ever (TRAINING.md, eleventh round: the most
common failure on fresh seeds). The missed attempt itself is never recorded (its labels would teach
closing beside the block).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .env import SimEnv
from .task_family import CONTAINER_FLOOR, PUSH_DISTANCE, PUSH_STANDOFF, footprint, half_height

MAX_STEP = 0.03  # metres per control step
# Largest commanded TCP translation between two control steps, corrections included: below the
# executors' per-step limit (sim_franka.yaml: 0.03 m), so a demonstration replays unclipped
COMMAND_STEP_LIMIT = 0.025
APPROACH = 0.12
GRASP_HEIGHT = 0.008  # TCP above the object centre: the fingertip pads then clear the table
RELEASE_HEIGHT = 0.022  # TCP above (floor + object half height) where the gripper opens
MAX_EPISODE_STEPS = 400
STUCK_STEPS = 10  # control steps without progress that end an episode as failed
# Pushing along x (forward / backward) the WidowX's closed fingers, 3 cm apart, straddle the object and
# wedge it between them: push with one finger, the TCP shifted sideways by this much [m]
PUSH_LATERAL = {"franka": 0.0, "widowx": 0.015}
PERTURB_CORRELATION = 0.85  # per control step: the offset drifts over ~7 steps
PERTURB_FADE = (0.02, 0.08)  # no offset within 2 cm of the waypoint, full offset beyond 8 cm
MISS_CAUGHT_OPENING = 0.3  # finger opening above which a deliberate miss closed on the object after all
FINGERS_RESTING = 0.05  # finger opening change per control step below which the fingers rest (on an object)
EMBODIMENTS = {"franka": "franka_real", "widowx": "widowx_bridge"}  # how each simulated robot deploys
# The expert's behaviour, named after its last change. Bump it with every change that alters the episodes
# the expert writes: a staging directory records it (data_engine.GENERATOR) and refuses to resume with
# another expert, so one dataset never mixes two experts' demonstrations.
EXPERT_VERSION = "2026-12-push-descent-perturbed"


def reference_frame(robot: str) -> str:
    """The frame convention of ``robot``'s deployment embodiment ("tool" Franka, "base" WidowX)."""
    from internvla_core.embodiments import get_embodiment

    return get_embodiment(EMBODIMENTS[robot]).reference_frame


@dataclass(frozen=True)
class GraspMiss:
    """A deliberate missed grasp before the recorded recovery (module docstring)."""

    offset: tuple[float, float]  # [m] base-frame x, y of the missed grasp point from the object's centre
    rise: float  # [m] the empty gripper rises this much after closing, before the recording starts

    @staticmethod
    def draw(rng: np.random.Generator, hand_x: np.ndarray) -> GraspMiss:
        """A miss beside the object along the hand's x axis (``hand_x``, base frame; the fingers close
        along y), 3.5-4.5 cm off at up to 20 degrees: the fingers close on nothing; rise 0-8 cm."""
        angle = rng.uniform(-np.pi / 9, np.pi / 9) + (np.pi if rng.random() < 0.5 else 0.0)
        across = np.array([-hand_x[1], hand_x[0]])
        direction = np.cos(angle) * np.asarray(hand_x[:2]) + np.sin(angle) * across
        direction /= np.linalg.norm(direction)
        distance = rng.uniform(0.035, 0.045)
        return GraspMiss(
            (float(direction[0] * distance), float(direction[1] * distance)), rng.uniform(0, 0.08)
        )


class MissCaughtObjectError(RuntimeError):
    """A deliberate miss closed on the object anyway: no recovery to record."""


@dataclass
class ExpertEpisode:
    success: bool
    steps: int
    actions: list[np.ndarray] = field(
        default_factory=list
    )  # commanded [dx, dy, dz, droll, dpitch, dyaw, gripper]
    joint_commands: list[np.ndarray] = field(default_factory=list)  # [q_cmd..., gripper]
    frame: str = "base"


class ScriptedExpert:
    def __init__(
        self,
        env: SimEnv,
        observe: Callable[[SimEnv], None] | None = None,
        frame: str | None = None,
        perturb: float = 0.0,
        rng: np.random.Generator | None = None,
        perturb_descent: bool = False,
        grasp_rise: float = 0.0,
    ) -> None:
        from internvla_core.embodiments.base import delta_between
        from internvla_core.kinematics import IKSolver
        from internvla_core.robot_assets import robot_description

        self._delta_between = delta_between
        self.env = env
        self.observe = observe
        self.frame = frame or reference_frame(env.robot.robot)
        self.ik = IKSolver.from_description(robot_description(env.robot.description))
        # keep the home orientation (fingers pointing down); the WidowX, with 6 joints, can hold it
        # anywhere in its table-top layout (checked over the layout grid)
        self.down = self.ik.fk(np.array(env.robot.home))[:3, :3]
        self.tcp_offset = np.array(env.robot.tcp_offset)
        self.actions: list[np.ndarray] = []
        self.joint_commands: list[np.ndarray] = []
        self.gripper = 1.0
        self.t_cmd = self.ik.fk(env.arm_positions())  # T_cmd[-1]: the measured pose at the start
        self.perturb = float(perturb)
        self.perturb_descent = bool(perturb_descent)
        if grasp_rise < 0:
            raise ValueError(f"grasp_rise must be >= 0 metres, got {grasp_rise}")
        self.grasp_rise = float(grasp_rise)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.offset = np.zeros(3)  # the perturbation's current offset [m]
        self.grasp_miss: GraspMiss | None = None  # miss_first: the next pick starts with this miss
        self._recording = True  # False while a miss runs: it is recorded from its recovery on

    def miss_first(self, rng: np.random.Generator) -> GraspMiss:
        """Draw a :class:`GraspMiss` beside the object along this robot's hand x axis and make the next
        pick start with it (recorded from the recovery on)."""
        self.grasp_miss = GraspMiss.draw(rng, self.down[:, 0])
        self._recording = False
        return self.grasp_miss

    def _hand_target(self, tcp: np.ndarray) -> np.ndarray:
        target = np.eye(4)
        target[:3, :3] = self.down
        target[:3, 3] = tcp - self.down @ self.tcp_offset
        return target

    def _move(self, tcp: np.ndarray, max_steps: int = 60, travel: bool = False) -> None:
        """Straight TCP line to ``tcp`` at MAX_STEP per control step, then settle a few steps. ``travel``:
        a move through free space above the objects (to above a grasp, place or push), the only moves
        that ``perturb`` perturbs (with ``perturb_descent`` also the descent onto a grasp); grasps,
        lifts and the other descents stay clean."""
        best = np.inf
        stalled = 0
        for _ in range(max_steps):
            now = self._tcp()
            delta = tcp - now
            distance = float(np.linalg.norm(delta))
            if distance < 0.004:
                break
            # position control sags under gravity by ~1 cm: stop when no more progress is made (a
            # perturbed step is not a stall: the offset, not the arm, decides its progress)
            perturbed = travel and self.perturb > 0 and distance > PERTURB_FADE[0]
            stalled = 0 if perturbed else (stalled + 1 if distance > best - 1e-3 else 0)
            best = min(best, distance)
            if stalled >= 3 and distance < 0.02:
                break
            if stalled >= STUCK_STEPS:  # blocked far from the goal (fingers on the table, an obstacle)
                raise TimeoutError(f"no progress toward {np.round(tcp, 3)} for {STUCK_STEPS} steps")
            step = delta if np.linalg.norm(delta) <= MAX_STEP else delta * (MAX_STEP / np.linalg.norm(delta))
            self._command(self._hand_target(now + step), self._perturbation(distance) if travel else None)
        # integral correction of the static tracking error (gravity sag, contact): aim past the goal
        aim = np.array(tcp, dtype=np.float64)
        for _ in range(4):
            self._command(self._hand_target(aim))
            aim = aim + 0.7 * (tcp - self._tcp())

    def _perturbation(self, distance: float) -> np.ndarray | None:
        """The offset added to the sent target this step (None: none), see the module docstring."""
        if self.perturb <= 0:
            return None
        rho = PERTURB_CORRELATION
        noise = self.rng.standard_normal(3) * np.array([1.0, 1.0, 0.5]) * self.perturb
        self.offset = rho * self.offset + np.sqrt(1 - rho**2) * noise
        fade = float(np.clip((distance - PERTURB_FADE[0]) / (PERTURB_FADE[1] - PERTURB_FADE[0]), 0.0, 1.0))
        return self.offset * fade

    def _tcp(self) -> np.ndarray:
        hand = self.env.hand_pose()
        return hand[:3, 3] + hand[:3, :3] @ self.tcp_offset

    def _command(self, hand_target: np.ndarray, offset: np.ndarray | None = None) -> None:
        """Solve IK for ``hand_target`` (4x4, base frame), record the command and run one control step.
        ``offset`` (perturbed data): the target sent is ``hand_target`` shifted by it; the recorded action
        still leads to ``hand_target``."""
        env = self.env
        if len(self.actions) >= MAX_EPISODE_STEPS:
            raise TimeoutError(f"expert exceeded {MAX_EPISODE_STEPS} steps")
        step = hand_target[:3, 3] - self.t_cmd[:3, 3]
        distance = float(np.linalg.norm(step))
        if distance > COMMAND_STEP_LIMIT:  # a correction or a grip at the sagged pose: one bounded step
            hand_target = hand_target.copy()
            hand_target[:3, 3] = self.t_cmd[:3, 3] + step * (COMMAND_STEP_LIMIT / distance)
        q = self.ik.solve(env.arm_positions(), hand_target, max_iters=60).q
        q_sent = q
        if offset is not None:
            sent = hand_target.copy()
            sent[:3, 3] = sent[:3, 3] + offset
            q_sent = self.ik.solve(env.arm_positions(), sent, max_iters=60).q
        if self.observe is not None and self._recording:
            self.observe(env)
        env.apply_joint_targets(q_sent, self.gripper)
        env.step()
        delta = self._delta_between(self.t_cmd, self.ik.fk(q), self.frame)
        self.t_cmd = self.ik.fk(q_sent)
        if self._recording:
            self.actions.append(np.concatenate([delta, [self.gripper]]))
            self.joint_commands.append(np.concatenate([q, [self.gripper]]))

    def _grip(self, opening: float, steps: int = 6, rise: float = 0.0) -> None:
        """Open or close the gripper, the arm commanded to the measured hand pose at the start (it settles
        lower under gravity: the fingers then close a little lower on the object, which grasps better).
        ``rise`` > 0: once the fingers rest (their opening changed less than FINGERS_RESTING over the last
        step), each further step raises the target by ``k * rise`` more (k = 1, 2, ...) instead of holding
        still, so the hold is the start of the lift (module docstring)."""
        self.gripper = opening
        target = self.env.hand_pose()
        before = self.env.finger_opening()
        k = 0
        for _ in range(steps):
            self._command(target)
            now = self.env.finger_opening()
            if rise > 0 and abs(now - before) < FINGERS_RESTING:
                k += 1
                target = target.copy()
                target[2, 3] += k * rise
            before = now

    def _grasp_tcp(self, name: str) -> np.ndarray:
        return self.env.object_positions()[name] + [0, 0, GRASP_HEIGHT]

    def _miss(self, name: str, miss: GraspMiss) -> None:
        """The unrecorded missed grasp: beside ``name``, close on nothing, rise; recording starts after."""
        aim = self.env.object_positions()[name] + [miss.offset[0], miss.offset[1], 0.0]
        self._grip(1.0, 1)
        self._move(aim + [0, 0, APPROACH], travel=True)
        self._move(aim + [0, 0, GRASP_HEIGHT])
        self._grip(0.0)
        if self.env.finger_opening() > MISS_CAUGHT_OPENING:
            raise MissCaughtObjectError(
                f"the miss {miss} closed on {name} (opening {self.env.finger_opening():.2f})"
            )
        if miss.rise > 0:
            self._move(self._tcp() + [0, 0, miss.rise])
        self._recording = True

    def _pick(self, name: str, lift: float = 0.15) -> None:
        if self.grasp_miss is not None and not self._recording:
            self._miss(name, self.grasp_miss)
        obj = self.env.object_positions()[name]
        self._grip(1.0, 1)
        self._move(obj + [0, 0, APPROACH], travel=True)
        self._move(self._grasp_tcp(name), travel=self.perturb_descent)
        self._grip(0.0, rise=self.grasp_rise)
        self._move(obj + [0, 0, lift])

    def _place(self, xy: np.ndarray, release_z: float) -> None:
        above = np.array([xy[0], xy[1], release_z + 0.07])
        self._move(above, travel=True)
        self._move(np.array([xy[0], xy[1], release_z]))
        self._grip(1.0)
        self._move(np.array([xy[0], xy[1], release_z + 0.1]))

    def _push(self, name: str, direction: np.ndarray, radius: float) -> None:
        obj = self.env.object_positions()[name]
        direction = np.array([direction[0], direction[1], 0.0])
        self._grip(0.0, 2)
        height = min(obj[2] + 0.005, 0.03) - obj[2]
        start = obj - direction * (radius + PUSH_STANDOFF) + [0, 0, height]
        if abs(direction[0]) > 0.5:
            start[1] += PUSH_LATERAL[self.env.robot.robot]
        self._move(start + [0, 0, APPROACH - height], travel=True)
        self._move(start, travel=self.perturb_descent)
        self._move(start + direction * PUSH_DISTANCE)
        self._move(start + direction * PUSH_DISTANCE + [0, 0, APPROACH - height])

    def run(self) -> ExpertEpisode:
        env = self.env
        task = env.task
        target = task.target
        spec = task.object(target)
        try:
            if task.skill == "pick":
                self._pick(target)
                self._grip(0.0, 5)
            elif task.skill in ("put_on", "put_in", "move_next_to"):
                self._pick(target)
                if task.skill == "move_next_to":
                    xy = np.asarray(task.place_xyz[:2])
                    release = half_height(spec) + RELEASE_HEIGHT
                else:
                    xy = env.object_positions()[task.container][:2]
                    release = CONTAINER_FLOOR + half_height(spec) + RELEASE_HEIGHT
                self._place(xy, release)
            elif task.skill.startswith("push_"):
                radius = 0.02 if task.named else footprint(spec)  # the named task's 6 cm standoff
                self._push(target, np.asarray(task.direction), radius)
            else:  # pragma: no cover - every skill has a script
                raise ValueError(f"no script for skill {task.skill}")
        except (TimeoutError, MissCaughtObjectError):
            return ExpertEpisode(False, env.steps, self.actions, self.joint_commands, self.frame)
        return ExpertEpisode(env.success(), env.steps, self.actions, self.joint_commands, self.frame)
