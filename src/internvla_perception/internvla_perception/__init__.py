"""internvla_perception: InternVLA-M1 spatial grounding ("where to act") as ROS 2 topics and a service."""
