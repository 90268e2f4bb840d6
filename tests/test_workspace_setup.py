"""Workspace plumbing: the CMake cure of the ROS wheels and the shape of the repository."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "internvla_msgs",
    "internvla_core",
    "internvla_perception",
    "internvla_policy",
    "internvla_sim",
    "internvla_bringup",
]


def load_cure():
    spec = importlib.util.spec_from_file_location("cure_ros_cmake", ROOT / "scripts" / "cure_ros_cmake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cure_rewrites_build_machine_include_paths_and_is_idempotent(tmp_path):
    cure = load_cure()
    share = tmp_path / "share" / "sensor_msgs" / "cmake"
    share.mkdir(parents=True)
    original = (
        'INTERFACE_INCLUDE_DIRECTORIES "/opt/python/cp311-cp311/include/python3.11;'
        '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"\n'
    )
    target = share / "export_sensor_msgs__rosidl_generator_pyExport.cmake"
    target.write_text(original)
    untouched = share / "other.cmake"
    untouched.write_text("set(X /usr/include)\n")

    assert cure.main(str(tmp_path)) == 0
    cured = target.read_text()
    paths = cure.local_paths()
    assert "/opt/python" not in cured
    assert paths["include"] in cured and paths["numpy"] in cured
    assert untouched.read_text() == "set(X /usr/include)\n"

    assert cure.main(str(tmp_path)) == 0
    assert target.read_text() == cured


def test_every_package_has_a_valid_manifest_with_a_real_maintainer():
    for name in PACKAGES:
        manifest = ET.parse(ROOT / "src" / name / "package.xml").getroot()
        assert manifest.get("format") == "3"
        assert manifest.findtext("name") == name
        email = manifest.find("maintainer").get("email")
        assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", email), email
        assert manifest.findtext("license")
        build_type = manifest.find("export").findtext("build_type")
        assert build_type == ("ament_cmake" if name == "internvla_msgs" else "ament_python")


def test_internvla_core_imports_without_ros_and_never_imports_rclpy():
    code = (
        "import sys, importlib, pkgutil, internvla_core\n"
        "assert 'rclpy' not in sys.modules\n"
        "print(internvla_core.__version__)\n"
    )
    env_path = str(ROOT / "src" / "internvla_core")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for source in (ROOT / "src" / "internvla_core" / "internvla_core").rglob("*.py"):
        text = source.read_text()
        assert not re.search(r"^\s*(import|from)\s+rclpy", text, re.M), f"{source} imports rclpy"


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    commands = [
        line.strip() for line in ci.splitlines() if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test"]
    assert "make test" in readme and "make demo" in readme
