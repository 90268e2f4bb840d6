"""What the chunk executor node decides, without ROS: settings from parameters, the robot model and its
joint limits, an ActionChunk's fields and the e-stop release, the lock-step gate, the chunk-trajectory
plan a controller follows, the robot-error recovery sequence and the content of ~/status and /diagnostics.

``internvla_policy.chunk_executor_node`` converts messages, calls these and publishes; everything here is
tested without rclpy (``test/test_execution_*.py``).
"""
