"""Real WidowX 250 6DOF: Interbotix xsarm + MoveIt + RealSense, then grounding -> policy -> chunk executor.
dry_run is true unless dry_run:=false. Example:
  ros2 launch internvla_bringup widowx.launch.py checkpoint:=/models/InternVLA-M1-Bridge device:=cuda \
      calibration:=$HOME/.ros2/easy_handeye2/calibrations/widowx_realsense.calib
The Interbotix stack runs on Humble (its install script: galactic, humble, rolling): use docker/compose.widowx.yaml.

The graph (nodes, config/widowx.yaml, overrides, remappings, driver includes) is described once in
internvla_bringup.graphs; `internvla-run widowx` starts the same nodes without the launch package.
"""

from internvla_bringup.launch_support import generate


def generate_launch_description():
    return generate("widowx")
