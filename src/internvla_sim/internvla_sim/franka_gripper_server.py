"""franka_gripper's Grasp and Move action servers for the simulated Franka hand.

Where franka_msgs is importable (it has no wheels for pip setups). The fingers go to the goal's width
until they stop moving; success follows franka_gripper's rule (internvla_core.sim_stepping). Speed and
force are not emulated: the simulated fingers close at their own speed and force. The servers are made
once with the node and accept goals only while it is active (ManagedNode.managed_action_server).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from internvla_core.sim_stepping import gripper_goal_check, gripper_goal_outcome


class FrankaGripperServer:
    """Serves Grasp on ``grasp_name`` and Move on ``move_name`` for ``node`` (a SimNode)."""

    def __init__(self, node, grasp_name: str, move_name: str, command: Callable[[float], None]) -> None:
        from franka_msgs.action import Grasp, Move
        from rclpy.callback_groups import ReentrantCallbackGroup

        self.node, self.command = node, command
        group = ReentrantCallbackGroup()  # an execution waits for the simulation, others still answer
        self.servers = {
            kind: node.managed_action_server(
                action,
                name,
                lambda handle, k=kind, a=action: self.execute(handle, k, a),
                callback_group=group,
            )
            for kind, action, name in (("grasp", Grasp, grasp_name), ("move", Move, move_name))
        }

    @staticmethod
    def available() -> bool:
        try:
            import franka_msgs.action  # noqa: F401
        except ImportError:
            return False
        return True

    def execute(self, goal_handle, kind: str, action):
        """Fingers to the goal's width until they stop; success by franka_gripper's rule."""
        node, goal, result = self.node, goal_handle.request, action.Result()
        max_width = float(np.sum(node.env.robot.finger_open))
        result.error, final = gripper_goal_check(goal.width, max_width), None
        if not result.error:
            self.command(float(goal.width / max_width))
            eps = (goal.epsilon.inner, goal.epsilon.outer) if kind == "grasp" else (0.0, 0.0)
            settled = node.clock.wait_settled(node.params.gripper_action_timeout)
            _, result.error, final = gripper_goal_outcome(kind, goal.width, settled, max_width, *eps)
            if final is not None:
                goal_handle.publish_feedback(action.Feedback(current_width=final))
        result.success = not result.error
        if result.success:
            goal_handle.succeed()
        else:
            node.get_logger().warning(f"gripper {kind} aborted: {result.error}")
            goal_handle.abort()
        return result
