"""Simulated WidowX 250 6DOF in MuJoCo (the Bridge robot): sim -> grounding -> policy -> chunk executor.
Example: ros2 launch internvla_bringup sim_widowx.launch.py checkpoint:=/models/InternVLA-M1-Bridge device:=cuda

The graph (nodes, config/sim_widowx.yaml, overrides, remappings, driver includes) is described once in
internvla_bringup.graphs; `internvla-run sim_widowx` starts the same nodes without the launch package.
"""

from internvla_bringup.launch_support import generate


def generate_launch_description():
    return generate("sim_widowx")
