"""Build test-only interface packages (stand-ins for messages that have no wheels) once; used by tests.

``build_interfaces(name, sources)`` copies the package folders ``sources`` into ``build/<name>/src`` and
builds them with the venv's colcon and rosidl, only when a definition changed (a digest stamp; about
30 s on two cores). It returns the build's ``local_setup.bash``: tests source it in a subprocess.
``franka_msgs_setup()`` and ``moveit_msgs_setup()`` are the two builds the tests use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
NOT_COPIED = ("COLCON_IGNORE", "README.md")  # COLCON_IGNORE keeps the workspace build away from them


def _digest(sources: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for source in sources:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(source.parent).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build_interfaces(name: str, sources: Sequence[Path]) -> Path:
    build = ROOT / "build" / name
    stamp, setup = build / "stamp", build / "install" / "local_setup.bash"
    digest = _digest(sources)
    if setup.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return setup
    shutil.rmtree(build, ignore_errors=True)
    for source in sources:
        shutil.copytree(source, build / "src" / source.name, ignore=shutil.ignore_patterns(*NOT_COPIED))
    venv = os.environ.get("VIRTUAL_ENV", str(ROOT / ".venv"))
    env = {**os.environ, "AMENT_PREFIX_PATH": venv, "CMAKE_PREFIX_PATH": venv, "PYTHONWARNINGS": "ignore"}
    command = [
        f"{venv}/bin/colcon",
        "--log-base",
        "log",
        "build",
        "--base-paths",
        "src",
        "--build-base",
        "build",
        "--install-base",
        "install",
        "--event-handlers",
        "console_direct-",
        "--cmake-args",
        f"-DPython3_EXECUTABLE={venv}/bin/python",
        "-DBUILD_TESTING=OFF",
    ]
    result = subprocess.run(command, cwd=build, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(
            f"building the test {name} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    stamp.write_text(digest)
    return setup


def franka_msgs_setup() -> Path:
    """franka_msgs + controller_manager_msgs (fake_franka_msgs/)."""
    folder = HERE / "fake_franka_msgs"
    return build_interfaces("fake_franka_msgs", [folder / "franka_msgs", folder / "controller_manager_msgs"])


def moveit_msgs_setup() -> Path:
    """The two moveit_msgs interfaces MoveIt Servo uses (fake_moveit_msgs/; colcon names the package
    by its package.xml, not by the folder)."""
    return build_interfaces("fake_moveit_msgs", [HERE / "fake_moveit_msgs"])


if __name__ == "__main__":
    print(franka_msgs_setup())
    print(moveit_msgs_setup())
