"""internvla_sim: MuJoCo table-top tasks behind driver-like ROS 2 interfaces."""
