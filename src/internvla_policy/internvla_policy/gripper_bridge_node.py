"""gripper_bridge: the executor's gripper opening (std_msgs/Float64 on ``gripper/command``, 0 closed ..
1 open) in the form the gripper's driver accepts (parameter ``interface``):

- ``joint_trajectory`` (WidowX / Interbotix, and the simulator's WidowX): the gripper is a second
  JointTrajectoryController; one trajectory_msgs/JointTrajectory (joint ``gripper_joint``, default
  ``left_finger``; one point at ``time_from_start``, stamp 0 = now) on
  ``<gripper_controller_name>/joint_trajectory`` per change beyond the deadband. Needs only
  trajectory_msgs (pip setups too).
- ``franka`` (franka_gripper): franka_msgs/action/Grasp with wide epsilons to close, franka_msgs/action/Move
  to open, on the action names ``grasp_action`` / ``move_action`` (default ``franka_gripper/grasp`` and
  ``franka_gripper/move``; franka_ros2's docs show ``fr3_gripper/...``); goals on open/close changes only,
  an aborted grasp is logged and not retried. franka_msgs ships with franka_ros2 only.
- ``gripper_command``: control_msgs/GripperCommand goals on ``gripper_action`` (a GripperActionController;
  control_msgs ships with full ROS installs only).

Schema ``params/gripper_bridge.yaml`` -> QoS -> core planner (:mod:`internvla_core.gripper`: deadband,
state changes, epsilons, abort handling) -> publish or send a goal. Lifecycle: configure builds the
planner and the trajectory publisher (a missing message package fails it); activate subscribes to
``gripper/command``. Action clients are made once, in ``__init__``, and kept until the node is
destroyed: like action servers, they must not be re-made while an executor spins the node.
With ``dry_run`` it logs what it would send and sends nothing.
"""

from __future__ import annotations

from pathlib import Path

from rclpy.action import ActionClient
from std_msgs.msg import Float64
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from internvla_core.gripper import FrankaGripperGoal, FrankaGripperPlanner, GripperGoalPlanner
from internvla_ros_common import qos
from internvla_ros_common.conversions import to_duration
from internvla_ros_common.lifecycle import ManagedNode
from internvla_ros_common.node_main import main_for

SCHEMA_PATH = Path(__file__).resolve().parent / "params" / "gripper_bridge.yaml"


def franka_actions():
    """franka_msgs' Grasp and Move actions, or what to install."""
    try:
        from franka_msgs.action import Grasp, Move
    except ImportError:
        raise RuntimeError(
            "gripper_bridge interface 'franka' needs franka_msgs (franka_ros2's workspace or its "
            "Docker image); it is not on PyPI"
        ) from None
    return {"grasp": Grasp, "move": Move}


def gripper_command_action():
    """control_msgs' GripperCommand action, or what to install."""
    try:
        from control_msgs.action import GripperCommand
    except ImportError:
        raise RuntimeError(
            "gripper_bridge interface 'gripper_command' needs control_msgs (a full ROS 2 install: apt "
            "install ros-$ROS_DISTRO-control-msgs, or the Docker image); it is not on PyPI"
        ) from None
    return GripperCommand


def trajectory(joint: str, position: float, time_from_start: float) -> JointTrajectory:
    """One point at ``time_from_start``; stamp 0 = "now" for the controller (no clock needed)."""
    point = JointTrajectoryPoint(positions=[float(position)], time_from_start=to_duration(time_from_start))
    return JointTrajectory(joint_names=[joint], points=[point])


class GripperBridgeNode(ManagedNode):
    """gripper/command openings -> the gripper driver's trajectory or action goals."""

    SCHEMA_PATH = SCHEMA_PATH

    def __init__(self, node_name: str = "gripper_bridge", **kwargs) -> None:
        super().__init__(node_name, SCHEMA_PATH, **kwargs)
        self.planner = self._trajectory_pub = None
        # Action clients are made here, once (the parameters are read-only): destroyed and re-made per
        # configure they could die in a spinning executor, and rclpy 9 registers an ActionClient with
        # the node before it creates its lock. A missing message package fails configure, not this.
        self._actions: dict[str, tuple[type, ActionClient]] = {}
        self._missing: RuntimeError | None = None
        try:
            self._actions = self._make_action_clients(self.param_listener.get_params())
        except RuntimeError as exc:
            self._missing = exc

    def _make_action_clients(self, p) -> dict[str, tuple[type, ActionClient]]:
        if p.interface == "franka":
            names = {"grasp": p.grasp_action, "move": p.move_action}
            return {k: (t, ActionClient(self, t, names[k])) for k, t in franka_actions().items()}
        if p.interface == "gripper_command":
            action = gripper_command_action()
            return {"command": (action, ActionClient(self, action, "gripper_action"))}
        return {}

    # ----------------------------------------------------------------------------------- lifecycle
    def setup(self, p) -> None:
        if self._missing is not None:
            raise self._missing
        if p.interface == "franka":
            self.planner = FrankaGripperPlanner(p.open_width, p.grasp_width, p.speed, p.force, p.epsilon)
        else:
            self.planner = GripperGoalPlanner(p.closed_position, p.open_position, p.max_effort, p.deadband)
        if p.interface == "joint_trajectory":
            topic = f"{p.gripper_controller_name}/joint_trajectory"
            self._trajectory_pub = self.create_lifecycle_publisher(JointTrajectory, topic, qos.COMMAND)
        mode = "dry run: logging goals only" if p.dry_run else "sending goals"
        self.get_logger().info(f"gripper_bridge configured ({p.interface}, {mode})")

    def activate(self) -> None:
        self.managed_subscription(Float64, "gripper/command", self._on_command, qos.COMMAND)

    def teardown(self) -> None:
        # the base destroys the publisher; the planner stays for goal results still on their way
        self._trajectory_pub = None

    def destroy_node(self) -> None:
        super().destroy_node()
        for _, client in getattr(self, "_actions", {}).values():  # rclpy leaves action clients alive
            client.destroy()

    # ----------------------------------------------------------------------------------- commands
    def _on_command(self, msg: Float64) -> None:
        try:
            goal = self.planner.plan(msg.data)
        except ValueError as exc:
            self.get_logger().error(f"gripper command ignored: {exc}", throttle_duration_sec=5.0)
            return
        if goal is None:
            return
        if self.params.dry_run:
            self.get_logger().info(f"dry run: would send gripper goal {goal}")
        elif self.params.interface == "joint_trajectory":
            p = self.params
            self._trajectory_pub.publish(trajectory(p.gripper_joint, goal.position, p.time_from_start))
        elif self.params.interface == "franka":
            self._send_franka(goal)
        else:
            self._send_gripper_command(goal)

    def _send_franka(self, goal: FrankaGripperGoal) -> None:
        action, client = self._actions[goal.kind]
        if not client.server_is_ready():
            self.planner.forget()
            self.get_logger().warning(
                f"no franka_gripper {goal.kind} action server: is franka_gripper running under that name?",
                throttle_duration_sec=5.0,
            )
            return
        request = action.Goal()
        request.width, request.speed = goal.width, goal.speed
        if goal.kind == "grasp":
            request.force = goal.force
            request.epsilon.inner, request.epsilon.outer = goal.epsilon_inner, goal.epsilon_outer
        future = client.send_goal_async(request)
        future.add_done_callback(lambda f, goal=goal: self._on_franka_response(f, goal))

    def _on_franka_response(self, future, goal: FrankaGripperGoal) -> None:
        handle = future.result()
        if handle is None or not handle.accepted:
            self.planner.forget()
            self.get_logger().warning(
                f"franka_gripper rejected the {goal.kind} goal: the next command is sent"
            )
            return
        handle.get_result_async().add_done_callback(lambda f, goal=goal: self._on_franka_result(f, goal))

    def _on_franka_result(self, future, goal: FrankaGripperGoal) -> None:
        from action_msgs.msg import GoalStatus

        response = future.result()
        success = response.status == GoalStatus.STATUS_SUCCEEDED and bool(response.result.success)
        report = self.planner.on_result(goal, success)
        if report:
            self.get_logger().error(f"{report} ({response.result.error})")

    def _send_gripper_command(self, goal) -> None:
        action, client = self._actions["command"]
        if not client.server_is_ready():
            self.planner.forget()
            self.get_logger().warning(
                "no gripper action server on gripper_action: is the gripper driver running and remapped?",
                throttle_duration_sec=5.0,
            )
            return
        request = action.Goal()
        request.command.position, request.command.max_effort = goal.position, goal.max_effort
        client.send_goal_async(request).add_done_callback(self._on_goal_response)

    def _on_goal_response(self, future) -> None:
        handle = future.result()
        if handle is None or not handle.accepted:
            self.planner.forget()
            self.get_logger().warning("gripper goal rejected: the next command is sent again")
            return
        handle.get_result_async().add_done_callback(self._on_result)

    def _on_result(self, future) -> None:
        result = future.result().result
        # stalled without reaching the position is a grasp (the fingers met an object): not a failure
        if not (result.reached_goal or result.stalled):
            self.planner.forget()


main = main_for(GripperBridgeNode)

if __name__ == "__main__":
    main()
