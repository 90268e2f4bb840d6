"""Build the test-only franka_msgs / controller_manager_msgs (this folder) once; used by the tests.

``build()`` returns the path of the build's ``local_setup.bash`` (build/fake_franka_msgs/install), rebuilt
only when a definition here changed (about 30 s on two cores). The tests source it in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
BUILD = ROOT / "build" / "fake_franka_msgs"
PACKAGES = ("franka_msgs", "controller_manager_msgs")


def _digest() -> str:
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((HERE / package).rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(HERE).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build() -> Path:
    stamp, setup = BUILD / "stamp", BUILD / "install" / "local_setup.bash"
    digest = _digest()
    if setup.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return setup
    shutil.rmtree(BUILD, ignore_errors=True)
    for package in PACKAGES:
        shutil.copytree(HERE / package, BUILD / "src" / package)
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
    result = subprocess.run(command, cwd=BUILD, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(
            f"building the test franka_msgs failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    stamp.write_text(digest)
    return setup


if __name__ == "__main__":
    print(build())
