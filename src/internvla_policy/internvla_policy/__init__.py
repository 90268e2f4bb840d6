"""internvla_policy: the InternVLA-M1 policy action server and the chunk executor."""
