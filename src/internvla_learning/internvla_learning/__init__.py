"""internvla_learning: datasets, training and evaluation statistics for InternVLA-M1 (pure Python, no rclpy).

It uses :mod:`internvla_core`; the core never imports it.
"""
