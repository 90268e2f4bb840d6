"""internvla_core: the pure-Python core of internvla_ros (no rclpy import anywhere in this package).

Heavy submodules (torch, transformers, mujoco, pinocchio) are imported lazily by the modules that
need them, so `import internvla_core` stays cheap and works without ROS.
"""

__version__ = "0.1.0"
