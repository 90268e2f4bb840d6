"""internvla_bringup: node-graph descriptions, launch files, configs and the demo of internvla_ros."""
