"""Simulated Franka Panda in MuJoCo: sim -> grounding -> policy -> chunk executor (lock-step by default).
Example: ros2 launch internvla_bringup sim_franka.launch.py task:=pick_green seed:=3 rviz:=true

The graph (nodes, config/sim_franka.yaml, overrides, remappings, driver includes) is described once in
internvla_bringup.graphs; `internvla-run sim_franka` starts the same nodes without the launch package.
"""

from internvla_bringup.launch_support import generate


def generate_launch_description():
    return generate("sim_franka")
