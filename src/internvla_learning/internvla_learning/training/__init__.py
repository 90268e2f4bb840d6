"""Training InternVLA-M1 on our datasets (stage 1 grounding co-training, stage 2 spatially guided action
training), writing upstream's released run layout. Pure Python; no rclpy. See ``TRAINING.md``."""
