"""chunk_executor's robot errors: robot mode and aborted goals in, ~/recover's ROS calls out.

Decisions are in ``internvla_core.robot_errors`` (latch, steps, refusals) and
``internvla_core.execution.recovery`` (what is missing, the sequence and its outcome); this module
subscribes, and runs one step as one ROS call, waiting for its answer.

The clients and the ~/recover service are made once with the node (their names are read-only
parameters) and live until destroy_node: creating and destroying action clients on every
configure/cleanup is what rclpy's executors do not survive for long. The subscriptions live while active.
"""

from __future__ import annotations

import threading

from action_msgs.msg import GoalStatus, GoalStatusArray
from lifecycle_msgs.msg import State as LifecycleStateMsg
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.qos import QoSProfile, ReliabilityPolicy

from internvla_core.execution.recovery import (
    AbortedGoals,
    latch_robot_error,
    missing_for,
    recovery_config,
    run_recovery,
    switch_request,
)
from internvla_core.robot_errors import RobotErrorMonitor, Step
from internvla_core.status import StatusCode
from internvla_msgs.srv import Recover
from internvla_ros_common.conversions import stamp_seconds

try:  # the Franka's robot mode and error recovery: franka_ros2 installs only (not on PyPI)
    from franka_msgs.action import ErrorRecovery
    from franka_msgs.msg import FrankaRobotState
except ImportError:  # pragma: no cover - depends on the install
    ErrorRecovery = FrankaRobotState = None

try:  # controller_manager's services (hardware component state, controller switch): ros2_control installs
    from controller_manager_msgs.srv import SetHardwareComponentState, SwitchController
except ImportError:  # pragma: no cover - depends on the install
    SetHardwareComponentState = SwitchController = None


def _wait(future, timeout: float):
    """The future's result within ``timeout`` s (another executor thread completes it), else None."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    return future.result() if done.wait(timeout) else None


class RecoveryLink:
    """Robot errors of one executor node: the node's ``robot_errors`` monitor, ``core`` and command lock."""

    def __init__(self, node, p) -> None:
        """``p``: the node's parameters (names of the recovery action and the controller_manager)."""
        self.node, self.action = node, p["error_recovery_action"]
        self.aborted = AbortedGoals()
        group = ReentrantCallbackGroup()  # answers to the recovery calls, while ~/recover waits for them
        self.error_recovery = self.hardware = self.switch = None
        if self.action and ErrorRecovery is not None:
            from rclpy.action import ActionClient

            self.error_recovery = ActionClient(node, ErrorRecovery, self.action, callback_group=group)
        manager = p["controller_manager"]
        if manager and SetHardwareComponentState is not None:
            self.hardware = node.create_client(
                SetHardwareComponentState, f"{manager}/set_hardware_component_state", callback_group=group
            )
            self.switch = node.create_client(
                SwitchController, f"{manager}/switch_controller", callback_group=group
            )
        node.create_service(
            Recover, "~/recover", self._on_recover, callback_group=MutuallyExclusiveCallbackGroup()
        )

    @staticmethod
    def monitor(p, ros_distro: str) -> RobotErrorMonitor:
        """The robot error monitor with the recovery steps the parameters ask for."""
        names = (p.controller_name, p.recovery_controllers, p.error_recovery_action, p.controller_manager)
        return RobotErrorMonitor(recovery_config(*names, p.hardware_component, p.driver_distro or ros_distro))

    def subscribe(self, robot_state_topic: str, watched_actions) -> None:
        """While active: the robot mode (best effort: either publisher QoS) and the actions' goal statuses."""
        node = self.node
        if robot_state_topic and FrankaRobotState is not None:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
            node.managed_subscription(
                FrankaRobotState,
                robot_state_topic,
                lambda msg: self._latched(
                    lambda monitor: monitor.on_robot_mode(
                        msg.robot_mode, stamp_seconds(msg.header.stamp) or None
                    )
                ),
                qos,
            )
        elif robot_state_topic:
            node.get_logger().info(
                f"franka_msgs is not installed: {robot_state_topic} (robot mode) is not watched"
            )
        for action in (a for a in watched_actions if a):
            node.managed_subscription(
                GoalStatusArray,
                f"{action}/_action/status",
                lambda msg, a=action: self._on_status(a, msg),
                10,
            )

    def _on_status(self, action: str, msg: GoalStatusArray) -> None:
        """Each goal of ``action`` seen ABORTED latches once (the status lists goals until they expire)."""
        for status in msg.status_list:
            goal = bytes(status.goal_info.goal_id.uuid)
            if status.status == GoalStatus.STATUS_ABORTED and self.aborted.is_new(goal):
                self._latched(lambda monitor, g=goal: monitor.on_goal_aborted(action, f"goal {g.hex()[:8]}"))

    def _latched(self, feed) -> None:
        """Feed the monitor under the command lock; a newly latched error stops and forgets the setpoint."""
        node = self.node
        with node.command_lock:
            if node.robot_errors is None or node.core is None:
                return
            reason = feed(node.robot_errors)
            if reason:
                node.get_logger().error(f"robot error: {reason}; sending nothing until ~/recover")
                latch_robot_error(node.core, reason)
                node.plan_follower.reset()
                node.output.status(StatusCode.ROBOT_ERROR, reason)

    def _on_recover(self, request, response):
        """Run the recovery steps in order (each waits for its answer); stop at the first failure."""
        node = self.node
        monitor, core, log = node.robot_errors, node.core, node.get_logger()
        if monitor is None or core is None:
            response.success, response.message = False, "the executor is not configured"
            return response
        timeout = node.param_listener.get_params().recovery_step_timeout
        missing = missing_for(
            monitor.config.steps(), self.error_recovery is not None, self.switch is not None
        )
        outcome = run_recovery(
            monitor,
            core,
            missing,
            lambda step: self.run_step(step, monitor.config, timeout),
            node.now_s,
            self._on_line,
            lambda: node.command_lock,
        )
        if outcome.success:
            with node.command_lock:
                node.output.status(StatusCode.HOLDING, core.stop_reason)
        if outcome.success:  # one severity per call site (rclpy)
            log.info(outcome.message)
        else:
            log.warning(outcome.message)
        response.success, response.message, response.steps = outcome.success, outcome.message, outcome.steps
        return response

    def _on_line(self, line: str, ok: bool) -> None:
        with self.node.command_lock:
            self.node.output.status(StatusCode.ROBOT_ERROR, f"recovery: {line}")
        if ok:  # one severity per call site (rclpy)
            self.node.get_logger().info(f"recovery step {line}")
        else:
            self.node.get_logger().error(f"recovery step {line}")

    def run_step(self, step: Step, config, timeout: float) -> tuple[bool, str]:
        """One recovery step as one call; (ok, detail). A call that failed outright is the step's failure."""
        try:
            if step == Step.ERROR_RECOVERY:
                return self._error_recovery(timeout)
            if step == Step.HARDWARE_ACTIVE:
                return self._hardware_active(config.hardware_component, timeout)
            return self._switch(step, config.controllers, timeout)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"

    def _error_recovery(self, timeout: float) -> tuple[bool, str]:
        if not self.error_recovery.wait_for_server(timeout_sec=timeout):
            return False, f"no action server {self.action}"
        handle = _wait(self.error_recovery.send_goal_async(ErrorRecovery.Goal()), timeout)
        if handle is None or not handle.accepted:
            return False, "goal not accepted" if handle is not None else "no answer to the goal"
        result = _wait(handle.get_result_async(), timeout)
        if result is None:
            return False, f"no result within {timeout:.1f} s"
        if result.status != GoalStatus.STATUS_SUCCEEDED:
            return False, f"goal ended with status {result.status}: the driver could not clear it"
        return True, ""

    def _hardware_active(self, component: str, timeout: float) -> tuple[bool, str]:
        if not self.hardware.wait_for_service(timeout_sec=timeout):
            return False, f"no service {self.hardware.srv_name}"
        target = LifecycleStateMsg(id=LifecycleStateMsg.PRIMARY_STATE_ACTIVE, label="active")
        answer = _wait(
            self.hardware.call_async(SetHardwareComponentState.Request(name=component, target_state=target)),
            timeout,
        )
        if answer is None:
            return False, f"no answer within {timeout:.1f} s"
        return bool(answer.ok), f"{component} is {answer.state.label or answer.state.id}"

    def _switch(self, step: Step, controllers, timeout: float) -> tuple[bool, str]:
        if not self.switch.wait_for_service(timeout_sec=timeout):
            return False, f"no service {self.switch.srv_name}"
        want = switch_request(step, controllers)
        request = SwitchController.Request(
            activate_controllers=list(want.activate),
            deactivate_controllers=list(want.deactivate),
            strictness=SwitchController.Request.STRICT
            if want.strict
            else SwitchController.Request.BEST_EFFORT,
        )
        request.timeout.sec = int(timeout)
        answer = _wait(self.switch.call_async(request), timeout + 1.0)
        if answer is None:
            return False, f"no answer within {timeout:.1f} s"
        detail = getattr(answer, "message", "")  # Humble's response has no message
        return bool(answer.ok), detail or ", ".join(controllers)
