"""The chunk trajectory a JointTrajectoryController is following (``chunk_trajectory``), tick by tick.

Each new chunk (or a re-synchronisation, a hold before, a plan that ran out or diverged) starts a new plan,
anchored at the controller's setpoint now: what was last commanded, or the measured joints when nothing was
(or the command was rebuilt from the measured state). Planning takes at most ``plan_budget`` of a period
per tick; the rest is planned on the next ticks. Between chunks nothing is sent, except: the trajectory is
re-sent (from "now", same knots, same times) when the plan is complete or has doubled since it was last
sent, and in lock-step every tick re-sends the rest (every step needs an answer). The controller plays the
trajectory by time, ticks or not: ``follow`` moves the core's setpoint to the knot the trajectory reached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..executor_core import Command, ExecutorCore
from ..trajectory import ChunkTrajectoryPlanner, anchored_points, can_plan


@dataclass
class RunningPlan:
    step: int  # control step of the anchor (the tick that planned it)
    chunks: int  # core.counters["chunks"] when planned: a new chunk re-plans
    planner: ChunkTrajectoryPlanner
    anchor: np.ndarray  # the controller's setpoint at the plan's tick (point 0)
    before: np.ndarray | None  # the setpoint one step before the anchor (None: at rest there)
    anchor_pose: np.ndarray
    sent: int = 0  # planned points when the trajectory was last sent
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    velocities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    poses: list = field(default_factory=list)


@dataclass(frozen=True)
class TrajectoryOut:
    """What to give the controller from the knot of "now": times from 0, positions, velocities."""

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    send: bool  # False: the controller already plays it (preview only)


class ChunkPlanFollower:
    def __init__(self, core: ExecutorCore, period: float, plan_budget: float, lockstep: bool) -> None:
        self.core, self.period, self.plan_budget, self.lockstep = core, period, plan_budget, lockstep
        self.plan: RunningPlan | None = None
        self._before_anchor: np.ndarray | None = None  # the setpoint before the last tick's

    def reset(self) -> None:
        """Motion after a hold (or an activation, a robot error) starts a new trajectory."""
        self.plan = None

    def follow(self, now: float) -> None:
        """Before the core's tick: a late tick (a skipped step) takes the setpoint the controller's
        trajectory has reached at this step, so the core integrates on from there."""
        plan, core = self.plan, self.core
        if plan is None:
            return
        knot = core.step_of(now) - plan.step
        if 0 < knot < len(plan.times) and core.last_commanded_joints is not None:
            core.last_commanded_joints = np.array(plan.positions[knot])
            core.last_commanded = np.array(plan.poses[knot])

    def after_tick(
        self,
        command: Command,
        previous: np.ndarray | None,
        previous_pose: np.ndarray | None,
        joints: np.ndarray | None,
    ) -> TrajectoryOut | None:
        """After the core's tick gave ``command`` (``previous``/``previous_pose``: the setpoint before
        it): the trajectory to preview and maybe send, or None when ``command`` goes alone (a hold)."""
        core = self.core
        if not can_plan(core, command):
            self.plan = None
            return None
        index = self.index_of(command)
        budget_end = time.perf_counter() + self.plan_budget * self.period
        if index is None:
            fresh = previous is None or command.from_measured  # built on the measured joints
            anchor = joints if fresh else previous
            planner = ChunkTrajectoryPlanner(core, command, anchor)
            planner.extend(deadline=budget_end)  # the rest on the next ticks if the budget ran out
            self.plan = RunningPlan(
                step=command.step,
                chunks=core.counters["chunks"],
                planner=planner,
                anchor=anchor,
                before=None if fresh else self._before_anchor,
                anchor_pose=core.ik.fk(anchor) if previous_pose is None or fresh else previous_pose,
            )
            self._anchor()
            core.counters["trajectories"] = core.counters.get("trajectories", 0) + 1
            index, send = 0, True
        else:
            send = self.lockstep  # lock-step: every step needs an answer
            planner = self.plan.planner
            if not planner.done and planner.extend(deadline=budget_end):
                self._anchor()
            # grow the controller's trajectory when the plan is complete or doubled since the last send:
            # a long chunk costs a few messages, and what was sent stays ahead of the controller
            if len(planner) != self.plan.sent and (planner.done or len(planner) >= 2 * self.plan.sent):
                send = True
        plan = self.plan
        if send:
            plan.sent = len(plan.planner)
        self._before_anchor = None if previous is None else np.array(previous)
        return TrajectoryOut(
            plan.times[index:] - plan.times[index], plan.positions[index:], plan.velocities[index:], send
        )

    def index_of(self, command: Command) -> int | None:
        """Knot of the running plan at this tick (the command is its next point), or None to re-plan."""
        plan = self.plan
        if plan is None or command.from_measured or plan.chunks != self.core.counters["chunks"]:
            return None
        index = command.step - plan.step
        if not 0 < index < len(plan.times) - 1:
            return None
        if not np.allclose(plan.positions[index + 1], command.joint_targets, rtol=0.0, atol=1e-9):
            return None
        return index

    def _anchor(self) -> None:
        """The plan's points for the controller: the anchor (setpoint at the plan's tick) at time 0."""
        plan = self.plan
        planned = plan.planner.trajectory()
        plan.times, plan.positions, plan.velocities = anchored_points(
            planned, plan.anchor, plan.before, self.period
        )
        plan.poses = [plan.anchor_pose, *planned.poses]
