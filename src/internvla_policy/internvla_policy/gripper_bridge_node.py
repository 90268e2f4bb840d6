"""gripper_bridge: the executor's gripper opening (std_msgs/Float64 on ``gripper/command``, 0 closed ..
1 open) as control_msgs/GripperCommand goals on ``gripper_action`` (remapped by the bringup onto
franka_gripper's ``/fr3_gripper/gripper_action`` or Interbotix's ``/wx250s/gripper_controller/gripper_cmd``).

The deadband and the position mapping live in :mod:`internvla_core.gripper` (tested there). control_msgs
ships with full ROS installs only (not on PyPI), so this node runs in the Docker image / on the robot PC.
With ``dry_run`` (the default) it logs the goals it would send and sends nothing.
"""

from __future__ import annotations

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import Float64

from internvla_core.gripper import GripperGoalPlanner


class GripperBridgeNode(Node):
    def __init__(self, node_name: str = "gripper_bridge", **kwargs) -> None:
        super().__init__(node_name, **kwargs)

        def declare(name, default, text):
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=True))

        declare("closed_position", 0.0, "controller position of a closed gripper (franka: 0.0 m per finger)")
        declare("open_position", 0.04, "controller position of an open gripper (franka: 0.04 m per finger)")
        declare("max_effort", 0.0, "GripperCommand max_effort [N]; 0 = the controller's limit")
        declare("deadband", 0.1, "opening change (fraction) below which no new goal interrupts the last")
        declare("dry_run", True, "log the goals instead of sending them")
        p = lambda name: self.get_parameter(name).value  # noqa: E731
        self.planner = GripperGoalPlanner(
            p("closed_position"), p("open_position"), p("max_effort"), p("deadband")
        )
        self.dry_run = bool(p("dry_run"))
        try:
            from control_msgs.action import GripperCommand
        except ImportError:
            raise RuntimeError(
                "gripper_bridge needs control_msgs (a full ROS 2 install: apt install "
                "ros-$ROS_DISTRO-control-msgs, or the Docker image); it is not on PyPI"
            ) from None
        from rclpy.action import ActionClient

        self._goal_type = GripperCommand.Goal
        self.client = ActionClient(self, GripperCommand, "gripper_action")
        self.create_subscription(Float64, "gripper/command", self._on_command, 10)
        mode = "dry run: logging goals only" if self.dry_run else "sending goals"
        self.get_logger().info(f"gripper_bridge ready ({mode})")

    def _on_command(self, msg: Float64) -> None:
        try:
            goal = self.planner.plan(msg.data)
        except ValueError as exc:
            self.get_logger().error(f"gripper command ignored: {exc}", throttle_duration_sec=5.0)
            return
        if goal is None:
            return
        if self.dry_run:
            self.get_logger().info(f"dry run: would send gripper position {goal.position:.4f}")
            return
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
