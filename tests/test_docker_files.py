"""The Docker image only copies paths that exist, and its entrypoint sources the built workspace."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_copy_source_of_the_dockerfile_exists_in_the_repository():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    sources = []
    for line in dockerfile.splitlines():
        match = re.match(r"^\s*COPY\s+(?!--from)(.+)\s+\S+\s*$", line)
        if match:
            sources += match.group(1).split()
    assert sources, "no COPY found"
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies missing path {source}"


def test_compose_builds_from_the_repository_root_with_the_dockerfile():
    compose = (ROOT / "docker" / "compose.yaml").read_text()
    assert "context: .." in compose and "dockerfile: docker/Dockerfile" in compose
    assert "network_mode: host" in compose and "capabilities: [gpu]" in compose
    entry = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "/ws/install/setup.bash" in entry and 'exec "$@"' in entry


def _compose(name: str) -> dict:
    import yaml

    services = yaml.safe_load((ROOT / "docker" / name).read_text())["services"]
    assert len(services) == 1, f"{name}: one service per robot"
    return next(iter(services.values()))


def test_franka_compose_has_franka_ros2s_real_time_settings():
    """franka_ros2's own docker-compose.yml: privileged, host network, SYS_NICE, rtprio 99, rttime -1,
    memlock 8428281856 (libfranka's 1 kHz loop under SCHED_FIFO with locked memory)."""
    service = _compose("compose.franka.yaml")
    assert service["network_mode"] == "host" and service["privileged"] is True
    assert "SYS_NICE" in service["cap_add"]
    assert service["ulimits"] == {"rtprio": 99, "rttime": -1, "memlock": 8428281856}
    assert service["build"]["args"]["ROS_DISTRO"] in ("jazzy", "humble")  # franka_ros2 v3.x / v2.x
    assert "/dev:/dev" in service["volumes"]  # the RealSense (USB)


def test_widowx_compose_is_humble_with_usb_devices_and_host_network():
    """Interbotix's ROS 2 stack supports galactic/humble/rolling only: the WidowX image is Humble."""
    service = _compose("compose.widowx.yaml")
    assert service["build"]["args"]["ROS_DISTRO"] == "humble"
    assert service["image"].endswith(":humble")
    assert service["network_mode"] == "host"
    assert (
        service["privileged"] is True and "/dev:/dev" in service["volumes"]
    )  # U2D2 (/dev/ttyDXL), RealSense
    assert "SYS_NICE" in service["cap_add"] and service["ulimits"]["rtprio"] == 99


def test_each_robot_image_base_distro_comes_from_the_dockerfile_argument():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^ARG ROS_DISTRO=\w+$", dockerfile, re.M)
    assert "FROM ros:${ROS_DISTRO}-ros-base" in dockerfile  # the compose args pick humble / jazzy
    for name in ("compose.franka.yaml", "compose.widowx.yaml"):
        service = _compose(name)
        assert service["build"]["context"] == ".." and service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["image"] == f"internvla_ros:{service['build']['args']['ROS_DISTRO']}"
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
