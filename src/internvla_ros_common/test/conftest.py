"""Fixtures of internvla_ros_common's tests: the shared rclpy context fixture, imported as any
package's conftest.py can. Without rclpy the pure tests (schema, callback gate) still run."""

import contextlib

with contextlib.suppress(ImportError):  # no ROS wheels: the tests that need the fixture skip themselves
    from internvla_ros_common.testing import rclpy_context  # noqa: F401 (a fixture)
