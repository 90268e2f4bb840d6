"""ROS helpers shared by every internvla_ros node: parameter schemas, the lifecycle base, main(),
QoS profiles, diagnostics, message conversions and test helpers.

Import the submodules (``internvla_ros_common.schema`` etc.): this package imports nothing at the
top so ``schema`` works without rclpy."""
