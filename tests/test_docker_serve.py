"""The server's Docker image and compose service: real paths, the same pins as the workspace, the
port on localhost unless the user widens it, the console script the image runs exists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(path: Path) -> dict[str, str]:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return {re.split(r"[=<>]", ln)[0]: ln for ln in lines}


def test_serve_requirements_use_the_workspace_pins():
    serve, workspace = pins(ROOT / "requirements" / "serve.txt"), pins(ROOT / "requirements" / "python.txt")
    assert {"torch", "transformers", "msgpack", "websockets"} <= set(serve)
    for name, line in serve.items():
        assert workspace.get(name) == line, (
            f"{name}: serve.txt has '{line}', python.txt '{workspace.get(name)}'"
        )


def test_dockerfile_serve_copies_existing_paths_and_runs_the_console_script():
    dockerfile = (ROOT / "docker" / "Dockerfile.serve").read_text()
    sources = [m.group(1) for m in re.finditer(r"^COPY\s+(\S+)\s+\S+$", dockerfile, re.M)]
    assert sources and all((ROOT / s).exists() for s in sources), sources
    assert 'ENTRYPOINT ["internvla-serve"' in dockerfile and "USER serve" in dockerfile
    setup = (ROOT / "src" / "internvla_core" / "setup.py").read_text()
    assert "internvla-serve = internvla_core.serving.cli:main" in setup


def test_compose_serve_publishes_on_localhost_unless_told_otherwise():
    services = yaml.safe_load((ROOT / "docker" / "compose.serve.yaml").read_text())["services"]
    service = services["internvla_serve"]
    assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile.serve"}
    assert service["ports"] == ["${INTERNVLA_SERVE_BIND:-127.0.0.1}:${INTERNVLA_SERVE_PORT:-10093}:10093"]
    assert "INTERNVLA_SERVE_API_KEY=${INTERNVLA_SERVE_API_KEY:-}" in service["environment"]
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "network_mode" not in service  # unlike the robot images: the server needs no DDS
