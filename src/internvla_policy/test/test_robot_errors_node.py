"""chunk_executor's robot errors: aborted goals (any install) and, against a fake Franka driver built from
franka_msgs / controller_manager_msgs definitions, reflexes and ~/recover.

franka_msgs and controller_manager_msgs are not on PyPI. The fake-driver cases
(robot_errors_fake_driver_cases.py) need them, so this test builds the test-only definitions
(fake_franka_msgs/, never installed) with colcon into build/fake_franka_msgs/ and runs the cases in a
subprocess that sources that build.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

import test_chunk_executor_node  # noqa: E402
from action_msgs.msg import GoalStatus, GoalStatusArray  # noqa: E402
from test_chunk_executor_node import BASE, STEP, wait_for  # noqa: E402

from internvla_msgs.msg import ExecutorStatus  # noqa: E402
from internvla_msgs.srv import Recover  # noqa: E402
from internvla_policy import chunk_executor_node  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CASES = HERE / "robot_errors_fake_driver_cases.py"
ros = test_chunk_executor_node.ros  # its fixture: executor + robot double


def aborted(goal: int) -> GoalStatusArray:
    status = GoalStatus(status=GoalStatus.STATUS_ABORTED)
    status.goal_info.goal_id.uuid = np.full(16, goal, dtype=np.uint8)
    return GoalStatusArray(status_list=[status])


@pytest.mark.ros
def test_an_aborted_gripper_goal_latches_and_stops_every_command(ros):
    node, robot = ros(BASE)
    status_pub = robot.node.create_publisher(GoalStatusArray, "franka_gripper/grasp/_action/status", 10)
    client = robot.node.create_client(Recover, "chunk_executor/recover")
    assert wait_for(
        lambda: status_pub.get_subscription_count() > 0 and robot.chunk_pub.get_subscription_count() > 0
    )
    time.sleep(0.1)
    robot.chunk(np.repeat(STEP, 10, axis=0))
    assert wait_for(lambda: len(robot.got["traj"]) >= 3)
    succeeded = aborted(1)
    succeeded.status_list[0].status = GoalStatus.STATUS_SUCCEEDED
    status_pub.publish(succeeded)  # a succeeded goal is no error
    time.sleep(0.2)
    assert ExecutorStatus.ROBOT_ERROR not in robot.codes()
    status_pub.publish(aborted(2))
    assert wait_for(lambda: ExecutorStatus.ROBOT_ERROR in robot.codes())
    time.sleep(0.2)
    count = len(robot.got["traj"])
    robot.chunk(np.repeat(STEP, 10, axis=0))
    time.sleep(0.4)
    assert len(robot.got["traj"]) == count  # nothing at all: no motion, no hold
    last = robot.got["status"][-1]
    assert last.code == ExecutorStatus.ROBOT_ERROR and "franka_gripper/grasp goal aborted" in last.detail
    assert node.robot_errors.counters["robot_errors"] == 1
    status_pub.publish(aborted(2))  # the same goal listed again: not a second error
    time.sleep(0.2)
    assert node.robot_errors.counters["robot_errors"] == 1

    assert client.wait_for_service(timeout_sec=10.0)
    done = threading.Event()
    future = client.call_async(Recover.Request())
    future.add_done_callback(lambda _: done.set())
    assert done.wait(20.0)
    answer = future.result()
    if chunk_executor_node.ErrorRecovery is None:  # pip setups: no franka_msgs to recover with
        assert not answer.success and "not installed: franka_msgs" in answer.message
        assert list(answer.steps) == [] and node.robot_errors.blocked
    else:  # a full install: no driver answers here
        assert not answer.success and answer.steps[0].startswith("error_recovery: failed")


@pytest.mark.ros
@pytest.mark.slow
def test_executor_against_a_fake_franka_driver():
    """The cases: a reflex stops every command; ~/recover refused while the user stop is pressed, then the
    documented steps in order (Humble: deactivate first); a failed step stops there and the error stays."""
    from fake_interfaces import franka_msgs_setup

    setup = franka_msgs_setup()
    command = (
        f"source {ROOT}/scripts/env.sh && source {setup} && python -m pytest -q -p no:cacheprovider {CASES}"
    )
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=280)
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert "4 passed" in result.stdout, output
