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
