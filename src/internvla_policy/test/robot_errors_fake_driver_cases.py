"""chunk_executor's robot errors against a fake Franka driver built from franka_msgs / controller_manager_msgs.

Run by test_robot_errors_node.py in a subprocess that sources the test build of those interfaces
(fake_franka_msgs/); needs ``franka_msgs`` importable, so it is not named test_*.py.

FakeFrankaDriver behaves as franka_ros2 documents its FCI error handling (franka_hardware/doc/index.rst):
it publishes FrankaRobotState (best effort) with the robot mode; after a reflex the hardware component is
unconfigured and the controllers inactive; ``/action_server/error_recovery`` (empty goal) clears the
reflex (the mode becomes IDLE) unless the robot refuses it; ``set_hardware_component_state`` can make the
component active only once the reflex is cleared; ``switch_controller`` activates controllers only on an
active component (STRICT: all named ones must exist) and deactivates the ones asked for.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from controller_manager_msgs.srv import SetHardwareComponentState, SwitchController
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from franka_msgs.action import ErrorRecovery
from franka_msgs.msg import FrankaRobotState
from lifecycle_msgs.msg import State
from rclpy.action import ActionServer
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from test_chunk_executor_node import BASE, HOME, STEP, RobotDouble, wait_for

from internvla_msgs.msg import ExecutorStatus
from internvla_msgs.srv import Recover
from internvla_policy.chunk_executor_node import ChunkExecutorNode

CONTROLLERS = ["arm_controller", "joint_state_broadcaster", "franka_robot_state_broadcaster"]


class FakeFrankaDriver(Node):
    def __init__(self, context, recovery_succeeds: bool = True) -> None:
        super().__init__("fake_franka_driver", context=context)
        self.recovery_succeeds = recovery_succeeds
        self.mode = FrankaRobotState.ROBOT_MODE_MOVE
        self.hardware = "active"
        self.active = set(CONTROLLERS)
        self.calls: list[tuple] = []
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.state_pub = self.create_publisher(
            FrankaRobotState, "/franka_robot_state_broadcaster/robot_state", qos
        )
        self.create_timer(0.02, self._publish)
        self.server = ActionServer(self, ErrorRecovery, "/action_server/error_recovery", self._recover)
        self.create_service(SwitchController, "/controller_manager/switch_controller", self._switch)
        self.create_service(
            SetHardwareComponentState, "/controller_manager/set_hardware_component_state", self._hardware
        )

    def reflex(self) -> None:  # Jazzy: the component goes unconfigured, its controllers inactive
        self.mode, self.hardware, self.active = FrankaRobotState.ROBOT_MODE_REFLEX, "unconfigured", set()

    def _publish(self) -> None:
        msg = FrankaRobotState(robot_mode=self.mode)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.state_pub.publish(msg)

    def _recover(self, goal_handle):
        self.calls.append(("error_recovery",))
        if self.recovery_succeeds and self.mode != FrankaRobotState.ROBOT_MODE_USER_STOPPED:
            self.mode = FrankaRobotState.ROBOT_MODE_IDLE
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return ErrorRecovery.Result()

    def _hardware(self, request, response):
        self.calls.append(("hardware", request.name, request.target_state.id, request.target_state.label))
        cleared = self.mode != FrankaRobotState.ROBOT_MODE_REFLEX
        response.ok = request.name == "FrankaHardwareInterface" and cleared
        if response.ok and request.target_state.id == State.PRIMARY_STATE_ACTIVE:
            self.hardware = "active"
        response.state = State(id=3 if self.hardware == "active" else 1, label=self.hardware)
        return response

    def _switch(self, request, response):
        activate, deactivate = list(request.activate_controllers), list(request.deactivate_controllers)
        self.calls.append(("switch", activate, deactivate, request.strictness))
        unknown = [c for c in activate + deactivate if c not in CONTROLLERS]
        if activate and (self.hardware != "active" or unknown):
            response.ok, response.message = False, f"cannot activate {activate} ({self.hardware}, {unknown})"
            return response
        self.active -= set(deactivate)
        self.active |= set(activate)
        if activate:
            self.mode = FrankaRobotState.ROBOT_MODE_MOVE
        response.ok, response.message = True, "switched"
        return response


@pytest.fixture
def bench(spin_in_background):
    context = Context()
    rclpy.init(context=context)
    nodes: list = []
    executor = MultiThreadedExecutor(num_threads=5, context=context)
    halt = spin_in_background(executor)

    def make(params: dict, recovery_succeeds: bool = True):
        overrides = [Parameter(k, value=v) for k, v in {**BASE, **params}.items()]
        node = ChunkExecutorNode(context=context, parameter_overrides=overrides)
        peer = Node("robot_double", context=context)
        driver = FakeFrankaDriver(context, recovery_succeeds)
        nodes.extend([node, peer, driver])
        for n in (node, peer, driver):
            executor.add_node(n)
        robot = RobotDouble(peer)
        robot.diagnostics = []
        peer.create_subscription(DiagnosticArray, "/diagnostics", robot.diagnostics.append, 50)
        robot.recover_client = peer.create_client(Recover, "chunk_executor/recover")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert wait_for(lambda: robot.matched(node)), "action_chunk / joint_states never matched"
        assert robot.recover_client.wait_for_service(timeout_sec=10.0)
        return node, robot, driver

    yield make
    halt()
    executor.shutdown()
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown(context=context)


def call_recover(robot) -> Recover.Response:
    done = threading.Event()
    future = robot.recover_client.call_async(Recover.Request())
    future.add_done_callback(lambda _: done.set())
    assert done.wait(30.0), "no answer from ~/recover"
    return future.result()


def moving_then_reflex(node, robot, driver) -> int:
    """Chunks flow into trajectories; then a reflex. Returns the trajectory count at the reflex."""
    time.sleep(0.2)
    robot.chunk(np.repeat(STEP, 10, axis=0))
    assert wait_for(lambda: len(robot.got["traj"]) >= 3), [
        (s.code, s.detail) for s in robot.got["status"][-5:]
    ]
    driver.reflex()
    assert wait_for(lambda: ExecutorStatus.ROBOT_ERROR in robot.codes())
    return len(robot.got["traj"])


def test_a_reflex_stops_every_command_and_a_requested_recovery_runs_the_documented_steps(bench):
    node, robot, driver = bench({})
    at_reflex = moving_then_reflex(node, robot, driver)
    time.sleep(0.2)
    settled, grips = len(robot.got["traj"]), len(robot.got["gripper"])
    assert settled <= at_reflex + 1  # at most one already on its way
    robot.chunk(np.repeat(STEP, 10, axis=0))  # a fresh chunk changes nothing while the error is latched
    time.sleep(0.5)
    assert len(robot.got["traj"]) == settled and len(robot.got["gripper"]) == grips
    error = next(s for s in reversed(robot.got["status"]) if s.code == ExecutorStatus.ROBOT_ERROR)
    assert "REFLEX" in error.detail
    assert wait_for(
        lambda: any(
            st.level == DiagnosticStatus.ERROR and "REFLEX" in st.message
            for d in robot.diagnostics
            for st in d.status
        )
    )
    assert driver.calls == []  # nothing recovered on its own

    driver.mode = FrankaRobotState.ROBOT_MODE_USER_STOPPED  # the user stop pressed: refused, nothing called
    time.sleep(0.2)
    answer = call_recover(robot)
    assert not answer.success and "user stop" in answer.message and driver.calls == []

    driver.mode = FrankaRobotState.ROBOT_MODE_REFLEX  # released
    time.sleep(0.2)
    answer = call_recover(robot)
    assert answer.success, answer
    assert [c[0] for c in driver.calls] == ["error_recovery", "hardware", "switch"]
    assert driver.calls[1] == ("hardware", "FrankaHardwareInterface", State.PRIMARY_STATE_ACTIVE, "active")
    assert driver.calls[2] == ("switch", CONTROLLERS, [], SwitchController.Request.STRICT)
    assert list(answer.steps) == [
        "error_recovery: ok",
        "hardware_active: ok (FrankaHardwareInterface is active)",
        "activate_controllers: ok (switched)",
    ]
    assert driver.active == set(CONTROLLERS)
    # holds without sending the old setpoint until a new chunk, which starts from the measured joints
    count = len(robot.got["traj"])
    time.sleep(0.4)
    assert len(robot.got["traj"]) == count
    assert robot.codes()[-1] == ExecutorStatus.HOLDING
    robot.chunk(np.repeat(STEP, 10, axis=0))
    assert wait_for(lambda: len(robot.got["traj"]) > count)
    first = robot.got["traj"][count]
    assert np.allclose(first.points[0].positions, HOME, atol=1e-6)
    assert ExecutorStatus.ROBOT_ERROR not in robot.codes()[-3:]


def test_humble_deactivates_the_controllers_first(bench):
    node, robot, driver = bench({"driver_distro": "humble"})
    moving_then_reflex(node, robot, driver)
    answer = call_recover(robot)
    assert answer.success, answer
    assert [c[0] for c in driver.calls] == ["switch", "error_recovery", "hardware", "switch"]
    assert driver.calls[0] == ("switch", [], CONTROLLERS, SwitchController.Request.BEST_EFFORT)


def test_a_failed_error_recovery_stops_there_and_the_error_stays(bench):
    node, robot, driver = bench({}, recovery_succeeds=False)
    moving_then_reflex(node, robot, driver)
    answer = call_recover(robot)
    assert not answer.success
    assert [c[0] for c in driver.calls] == ["error_recovery"]  # nothing after the failed step
    assert len(answer.steps) == 1 and answer.steps[0].startswith("error_recovery: failed")
    assert node.robot_errors.blocked and "recovery failed" in node.robot_errors.reason
    count = len(robot.got["traj"])
    robot.chunk(np.repeat(STEP, 10, axis=0))
    time.sleep(0.4)
    assert len(robot.got["traj"]) == count
    assert robot.codes()[-1] == ExecutorStatus.ROBOT_ERROR


def test_an_unknown_controller_fails_the_activation_step(bench):
    node, robot, driver = bench({"recovery_controllers": ["franka_robot_state_broadcaster", "not_loaded"]})
    moving_then_reflex(node, robot, driver)
    answer = call_recover(robot)
    assert not answer.success
    assert list(answer.steps)[:2] == [
        "error_recovery: ok",
        "hardware_active: ok (FrankaHardwareInterface is active)",
    ]
    assert answer.steps[2].startswith("activate_controllers: failed") and "not_loaded" in answer.steps[2]
    assert node.robot_errors.blocked
