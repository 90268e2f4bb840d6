"""The ``internvla-serve`` command: the tiny model without a checkpoint, localhost, the key from the
environment, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from serving_helpers import WireClient, image, m1_infer

from internvla_core.model import tiny_checkpoint
from internvla_core.serving.cli import build_parser

CORE = Path(__file__).resolve().parents[1]


def test_defaults_bind_localhost_on_upstreams_port_with_the_tiny_model():
    args = build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.port == 10093 and args.checkpoint == ""
    assert args.max_batch == 8 and args.compile == "off"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_command_serves_the_tiny_model_and_stops_on_sigterm():
    port = free_port()
    env = {**os.environ, "INTERNVLA_SERVE_API_KEY": "from-env", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(CORE), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "internvla_core.serving", "--port", str(port), "--max-batch", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client, deadline = None, time.monotonic() + 120
        while client is None:
            assert proc.poll() is None, proc.stdout.read()
            try:
                client = WireClient(f"ws://127.0.0.1:{port}", api_key="from-env")
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up within 120 s"
                time.sleep(0.2)
        assert client.metadata["max_batch"] == 4 and client.metadata["auth"] is True
        assert client.metadata["model"] == str(tiny_checkpoint())  # no --checkpoint: the tiny model
        reply = client.call(m1_infer([image(0)], "pick up the cup", num_ddim_steps=2))
        assert reply["ok"] and reply["data"]["normalized_actions"].shape[0] == 1
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # docker stop; scripts' background jobs ignore SIGINT
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output[-2000:]
    assert "untrained tiny factory model" in output and f"ws://127.0.0.1:{port}" in output
