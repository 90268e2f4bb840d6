"""``internvla-serve``: load a run directory and serve it over websockets (no ROS needed).

    internvla-serve --checkpoint RUN_DIR [--host 127.0.0.1] [--port 10093] [--device cuda]

Without ``--checkpoint`` the untrained tiny model is served (as the ROS nodes do), which is what the
tests and the CPU benchmark use. The API key comes from ``--api-key`` or ``$INTERNVLA_SERVE_API_KEY``
(the environment keeps it out of ``ps``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from . import DEFAULT_PORT
from .server import DEFAULT_MAX_MESSAGE_BYTES

DTYPES = ("auto", "float32", "bfloat16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="internvla-serve", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", default="", help="run dir, .pt file or hub id (empty: the tiny model)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 serves the network)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto: upstream's policy (bf16 VLM on CUDA); bfloat16: all",
    )
    parser.add_argument("--api-key", default=os.environ.get("INTERNVLA_SERVE_API_KEY", ""))
    parser.add_argument("--max-batch", type=int, default=8, help="samples per forward pass")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for company")
    parser.add_argument("--max-queue", type=int, default=64, help="queued requests before 'busy' replies")
    parser.add_argument(
        "--request-timeout", type=float, default=30.0, help="seconds a request may wait queued"
    )
    parser.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_BYTES / 2**20)
    parser.add_argument("--max-connections", type=int, default=64, help="open websockets (one thread each)")
    parser.add_argument("--cfg-scale", type=float, default=1.5, help="when a request gives none")
    parser.add_argument("--ddim-steps", type=int, default=10, help="when a request gives none")
    parser.add_argument(
        "--compile",
        default="off",
        choices=("off", "default", "reduce-overhead", "max-autotune"),
        help="torch.compile the DiT (reduce-overhead adds CUDA graphs); the first queries compile",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import torch

    from ..model import load_policy, tiny_checkpoint
    from .engine import BatchEngine
    from .server import PolicyServer

    checkpoint = args.checkpoint
    if not checkpoint:
        checkpoint = str(tiny_checkpoint())
        logging.warning("no --checkpoint given: serving the untrained tiny factory model %s", checkpoint)
    dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    policy = load_policy(checkpoint, device=args.device, dtype=dtype)
    engine = BatchEngine(policy)
    if args.compile != "off":
        engine.compile_action_head(args.compile)
    server = PolicyServer(
        engine,
        host=args.host,
        port=args.port,
        api_key=args.api_key or None,
        max_message_bytes=int(args.max_message_mb * 2**20),
        max_batch=args.max_batch,
        max_wait=args.max_wait_ms / 1000.0,
        max_queue=args.max_queue,
        request_timeout=args.request_timeout,
        default_cfg_scale=args.cfg_scale,
        default_ddim_steps=args.ddim_steps,
        model_name=checkpoint,
        max_connections=args.max_connections,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and server.api_key is None:
        logging.warning(
            "serving on %s without an API key: anyone who can reach the port can use the GPU", args.host
        )
    # SIGTERM (docker stop, systemd, kill) ends the server like Ctrl-C: queued requests get a
    # "shutting down" error and the model is freed. Background jobs of a script inherit SIGINT ignored,
    # so SIGTERM is also how a script stops it.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logging.info("stopping")
    finally:
        policy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
