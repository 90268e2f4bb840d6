"""Rewrite the build-machine paths that the PyPI ROS wheels hard-code in their exported CMake files.

The ROS 2 wheels were built in a manylinux container whose Python lived in /opt/python/cp311-cp311.
Their `share/*/cmake/*.cmake` files name that interpreter's include directory and numpy's include
directory; CMake then refuses to build any interface package ("Imported target ... includes
non-existent path"). We replace those strings with this interpreter's directories. Idempotent.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PYTHON = re.compile(r"/opt/python/cp3\d+-cp3\d+")


def local_paths() -> dict[str, str]:
    return {
        "include": sysconfig.get_paths()["include"],
        "numpy": numpy.get_include(),
    }


def cure_text(text: str, paths: dict[str, str]) -> str:
    """Return text with the build machine's Python/numpy include paths replaced by local ones."""
    text = re.sub(
        BUILD_PYTHON.pattern + r"/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include",
        paths["numpy"],
        text,
    )
    return re.sub(BUILD_PYTHON.pattern + r"/include/python3\.\d+", paths["include"], text)


def main(prefix: str) -> int:
    paths = local_paths()
    changed = 0
    for cmake_file in Path(prefix, "share").glob("*/cmake/*.cmake"):
        text = cmake_file.read_text(errors="surrogateescape")
        if "/opt/python/" not in text:
            continue
        new = cure_text(text, paths)
        if new != text:
            cmake_file.write_text(new, errors="surrogateescape")
            changed += 1
    left = [
        p
        for p in Path(prefix, "share").glob("*/cmake/*.cmake")
        if "/opt/python/cp" in p.read_text(errors="ignore")
    ]
    print(f"cured {changed} CMake files under {prefix}/share; {len(left)} still name /opt/python")
    for p in left:
        print(f"  still names the build machine: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
