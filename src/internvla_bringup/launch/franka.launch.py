"""Real Franka FR3 (franka_ros2 drives the FR3 only; no release drives a Panda): franka_ros2 + MoveIt +
RealSense, then grounding -> policy -> chunk executor. dry_run is true unless dry_run:=false. Example:
  ros2 launch internvla_bringup franka.launch.py robot_ip:=172.16.0.2 checkpoint:=/models/m1.pt device:=cuda \
      calibration:=$HOME/.ros2/easy_handeye2/calibrations/franka_realsense.calib camera_prefix:=/camera/camera

The graph (nodes, config/franka.yaml, overrides, remappings, driver includes) is described once in
internvla_bringup.graphs; `internvla-run franka` starts the same nodes without the launch package.
"""

from internvla_bringup.launch_support import generate


def generate_launch_description():
    return generate("franka")
