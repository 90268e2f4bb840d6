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

The decisions (deadband, state changes, epsilons, abort handling) live in :mod:`internvla_core.gripper`.
With ``dry_run`` it logs what it would send and sends nothing.
"""

from __future__ import annotations

import rclpy
from builtin_interfaces.msg import Duration
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import Float64
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from internvla_core.gripper import FrankaGripperGoal, FrankaGripperPlanner, GripperGoalPlanner
from internvla_core.stamps import split_seconds

INTERFACES = ("joint_trajectory", "franka", "gripper_command")


class GripperBridgeNode(Node):
    def __init__(self, node_name: str = "gripper_bridge", **kwargs) -> None:
        super().__init__(node_name, **kwargs)

        def declare(name, default, text):
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=True))

        declare("interface", "joint_trajectory", f"driver interface: one of {', '.join(INTERFACES)}")
        declare("closed_position", 0.015, "joint_trajectory / gripper_command: position when closed")
        declare("open_position", 0.037, "joint_trajectory / gripper_command: position when open")
        declare("deadband", 0.1, "opening change (fraction) below which no new goal interrupts the last")
        declare("gripper_controller_name", "gripper_controller", "joint_trajectory: the gripper's JTC")
        declare("gripper_joint", "left_finger", "joint_trajectory: the gripper controller's joint")
        declare("time_from_start", 0.5, "joint_trajectory: seconds to reach the new position")
        declare("max_effort", 0.0, "gripper_command: max_effort [N]; 0 = the controller's limit")
        declare("grasp_action", "franka_gripper/grasp", "franka: franka_msgs/action/Grasp action name")
        declare("move_action", "franka_gripper/move", "franka: franka_msgs/action/Move action name")
        declare("open_width", 0.08, "franka: Move width to open [m]")
        declare("grasp_width", 0.0, "franka: Grasp width to close on [m]")
        declare("speed", 0.1, "franka: finger speed [m/s]")
        declare("force", 20.0, "franka: grasp force [N]")
        declare("epsilon", 0.08, "franka: Grasp epsilon.inner and .outer [m] (wide: any object succeeds)")
        declare("dry_run", True, "log the goals instead of sending them")
        p = lambda name: self.get_parameter(name).value  # noqa: E731
        self.interface = p("interface")
        if self.interface not in INTERFACES:
            raise ValueError(f"interface must be one of {INTERFACES}, got '{self.interface}'")
        self.dry_run = bool(p("dry_run"))
        if self.interface == "franka":
            self.franka = FrankaGripperPlanner(
                p("open_width"), p("grasp_width"), p("speed"), p("force"), p("epsilon")
            )
            self._make_franka_clients(p("grasp_action"), p("move_action"))
        else:
            self.planner = GripperGoalPlanner(
                p("closed_position"), p("open_position"), p("max_effort"), p("deadband")
            )
        if self.interface == "joint_trajectory":
            self.joint = p("gripper_joint")
            self.time_from_start = float(p("time_from_start"))
            self.trajectory_pub = self.create_publisher(
                JointTrajectory, f"{p('gripper_controller_name')}/joint_trajectory", 10
            )
        elif self.interface == "gripper_command":
            self._make_gripper_command_client()
        self.create_subscription(Float64, "gripper/command", self._on_command, 10)
        mode = "dry run: logging goals only" if self.dry_run else "sending goals"
        self.get_logger().info(f"gripper_bridge ready ({self.interface}, {mode})")

    # ------------------------------------------------------------------------------------ clients
    def _make_franka_clients(self, grasp_name: str, move_name: str) -> None:
        try:
            from franka_msgs.action import Grasp, Move
        except ImportError:
            raise RuntimeError(
                "gripper_bridge interface 'franka' needs franka_msgs (franka_ros2's workspace or its "
                "Docker image); it is not on PyPI"
            ) from None
        from rclpy.action import ActionClient

        self._franka_types = {"grasp": Grasp, "move": Move}
        self.clients = {
            "grasp": ActionClient(self, Grasp, grasp_name),
            "move": ActionClient(self, Move, move_name),
        }

    def _make_gripper_command_client(self) -> None:
        try:
            from control_msgs.action import GripperCommand
        except ImportError:
            raise RuntimeError(
                "gripper_bridge interface 'gripper_command' needs control_msgs (a full ROS 2 install: apt "
                "install ros-$ROS_DISTRO-control-msgs, or the Docker image); it is not on PyPI"
            ) from None
        from rclpy.action import ActionClient

        self._goal_type = GripperCommand.Goal
        self.client = ActionClient(self, GripperCommand, "gripper_action")

    # ------------------------------------------------------------------------------------ commands
    def _on_command(self, msg: Float64) -> None:
        try:
            goal = self.franka.plan(msg.data) if self.interface == "franka" else self.planner.plan(msg.data)
        except ValueError as exc:
            self.get_logger().error(f"gripper command ignored: {exc}", throttle_duration_sec=5.0)
            return
        if goal is None:
            return
        if self.dry_run:
            self.get_logger().info(f"dry run: would send gripper goal {goal}")
            return
        if self.interface == "joint_trajectory":
            self.trajectory_pub.publish(self.trajectory(goal.position))
        elif self.interface == "franka":
            self._send_franka(goal)
        else:
            self._send_gripper_command(goal)

    def trajectory(self, position: float) -> JointTrajectory:
        """One point at ``time_from_start``; stamp 0 = "now" for the controller (no clock needed)."""
        sec, nanosec = split_seconds(self.time_from_start)
        point = JointTrajectoryPoint(
            positions=[float(position)], time_from_start=Duration(sec=sec, nanosec=nanosec)
        )
        return JointTrajectory(joint_names=[self.joint], points=[point])

    def _send_franka(self, goal: FrankaGripperGoal) -> None:
        client = self.clients[goal.kind]
        if not client.server_is_ready():
            self.franka.forget()
            self.get_logger().warning(
                f"no franka_gripper {goal.kind} action server: is franka_gripper running under that name?",
                throttle_duration_sec=5.0,
            )
            return
        request = self._franka_types[goal.kind].Goal()
        request.width, request.speed = goal.width, goal.speed
        if goal.kind == "grasp":
            request.force = goal.force
            request.epsilon.inner, request.epsilon.outer = goal.epsilon_inner, goal.epsilon_outer
        future = client.send_goal_async(request)
        future.add_done_callback(lambda f, goal=goal: self._on_franka_response(f, goal))

    def _on_franka_response(self, future, goal: FrankaGripperGoal) -> None:
        handle = future.result()
        if handle is None or not handle.accepted:
            self.franka.forget()
            self.get_logger().warning(
                f"franka_gripper rejected the {goal.kind} goal: the next command is sent"
            )
            return
        handle.get_result_async().add_done_callback(lambda f, goal=goal: self._on_franka_result(f, goal))

    def _on_franka_result(self, future, goal: FrankaGripperGoal) -> None:
        from action_msgs.msg import GoalStatus

        response = future.result()
        success = response.status == GoalStatus.STATUS_SUCCEEDED and bool(response.result.success)
        report = self.franka.on_result(goal, success)
        if report:
            self.get_logger().error(f"{report} ({response.result.error})")

    def _send_gripper_command(self, goal) -> None:
        if not self.client.server_is_ready():
            self.planner.forget()
            self.get_logger().warning(
                "no gripper action server on gripper_action: is the gripper driver running and remapped?",
                throttle_duration_sec=5.0,
            )
            return
        request = self._goal_type()
        request.command.position = goal.position
        request.command.max_effort = goal.max_effort
        self.client.send_goal_async(request).add_done_callback(self._on_goal_response)

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


def main(args=None) -> None:
    rclpy.init(args=args)
    node = GripperBridgeNode()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
