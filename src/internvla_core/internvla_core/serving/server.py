"""The websocket transport: handshake, auth, limits, routing, and keeping one bad client from others.

Each connection gets a thread (websockets' sync server); inference requests go to the shared
:class:`~.batcher.Batcher`, whose single worker owns the model, while ping/init/reset are answered at
once. Everything a client can send (a frame that is not msgpack, a text frame, a wrong image shape, an
unknown ``unnorm_key``, a full queue) gets an error reply with the reason, and the connection stays
open. A frame above ``max_message_bytes`` is the exception: websockets closes that connection with code
1009 (message too big) before reading it, which is the point of the limit. When a client hangs up while
its request waits or runs, the request is dropped (logged, counted in ``stats``) and nobody else notices.

Defaults are the safe ones: bind to localhost (``--host 0.0.0.0`` serves the network), no auth unless an
API key is given (then ``Authorization: Api-Key <key>``, as upstream's clients send it, is required at
the handshake; a wrong or missing key gets HTTP 401 and no metadata).
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import threading
import time
from concurrent.futures import CancelledError
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np

from . import DEFAULT_PORT
from .batcher import Batcher, JobTimeoutError, ServerBusyError
from .engine import BatchEngine
from .protocol import (
    STARVLA,
    ControlRequest,
    InferRequest,
    RequestError,
    error_reply,
    ok_reply,
    parse_request,
    safe_request_id,
)
from .wire import WireError, decode_frame, encode_frame

LOG = logging.getLogger("internvla_core.serving")
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
POLL_SECONDS = 0.05  # how often a waiting connection checks whether its client is still there


@dataclass
class ServerStats:
    connections: int = 0
    requests: int = 0
    error_replies: int = 0
    busy_replies: int = 0
    dropped_disconnected: int = 0
    rejected_auth: int = 0
    rejected_full: int = 0


class PolicyServer:
    """Serves a :class:`BatchEngine` to InternVLA-M1 and starVLA websocket clients."""

    def __init__(
        self,
        engine: BatchEngine,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch: int = 8,
        max_wait: float = 0.005,
        max_queue: int = 64,
        request_timeout: float = 30.0,
        default_cfg_scale: float = 1.5,
        default_ddim_steps: int = 10,
        model_name: str = "",
        max_connections: int = 64,
    ) -> None:
        self.engine = engine
        self.max_connections = max_connections
        self._active = 0  # open connections (each holds a thread)
        self._active_lock = threading.Lock()
        self.host = host
        self.requested_port = port
        self.api_key = api_key or None
        self.max_message_bytes = max_message_bytes
        self.request_timeout = request_timeout
        self.default_cfg_scale = default_cfg_scale
        self.default_ddim_steps = default_ddim_steps
        self.stats = ServerStats()
        self.batcher = Batcher(
            engine.run,
            max_batch=max_batch,
            max_wait=max_wait,
            max_queue=max_queue,
            timeout=request_timeout,
            expected_clients=lambda: self.active_connections,
        )
        self.metadata = self._metadata(model_name)
        self._metadata_frame = encode_frame(self.metadata)
        self._client_ids = itertools.count(1)
        self._server = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> PolicyServer:
        """Bind and serve on a background thread (returns at once; ``port`` is the bound port)."""
        self._bind()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="internvla-serve", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._bind()
        LOG.info("serving on ws://%s:%d (metadata %s)", self.host, self.port, self.metadata)
        try:
            self._server.serve_forever()
        finally:
            self.batcher.stop()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.batcher.stop()

    @property
    def port(self) -> int:
        return self._server.socket.getsockname()[1]

    @property
    def bound_host(self) -> str:
        return self._server.socket.getsockname()[0]

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"ws://{host}:{self.port}"

    def _bind(self) -> None:
        from websockets.sync.server import serve

        self._server = serve(
            self._handle,
            self.host,
            self.requested_port,
            compression=None,
            max_size=self.max_message_bytes,
            process_request=self._check_auth,
            ping_interval=20,
            ping_timeout=20,
        )

    def _metadata(self, model_name: str) -> dict[str, Any]:
        """What both dialects' clients read at the handshake (starVLA's keys included)."""
        policy = self.engine.policy
        keys = list(policy.unnorm_keys)
        size = policy.config.image_size
        return {
            "env": "internvla_ros",
            "model": model_name or str(policy.checkpoint_path),
            "protocols": ["internvla-m1", "starvla"],
            "action_chunk_size": self.engine.action_horizon,
            "action_dim": self.engine.action_dim,
            "available_unnorm_keys": keys,
            "default_unnorm_key": keys[0] if len(keys) == 1 else None,
            "training_obs_image_size": [int(size[1]), int(size[0])] if size else None,  # [H, W]
            "max_batch": self.batcher.max_batch,
            "auth": self.api_key is not None,
        }

    # ------------------------------------------------------------------------------------------ transport
    def _check_auth(self, connection, request):
        """Handshake gate: the connection limit (each connection holds a thread), then the API key."""
        with self._active_lock:
            full = self._active >= self.max_connections
        if full:
            self.stats.rejected_full += 1
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"too many connections (max_connections {self.max_connections}); retry later\n",
            )
        if self.api_key is None:
            return None
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        given, expected = token.strip().encode("utf-8", "replace"), self.api_key.encode()
        if scheme.lower() in ("api-key", "bearer") and hmac.compare_digest(given, expected):
            return None
        self.stats.rejected_auth += 1
        LOG.warning("refused %s: missing or wrong API key", connection.remote_address)
        return connection.respond(
            HTTPStatus.UNAUTHORIZED, "missing or wrong API key (Authorization: Api-Key <key>)\n"
        )

    def _handle(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        client = next(self._client_ids)
        self.stats.connections += 1
        with self._active_lock:
            self._active += 1
        LOG.info("client %d connected from %s", client, ws.remote_address)
        try:
            ws.send(self._metadata_frame)
            for frame in ws:
                reply = self._answer(client, frame, ws)
                if reply is None:  # the client left while its request ran
                    break
                ws.send(encode_frame(reply))
        except ConnectionClosed as exc:
            LOG.info("client %d closed the connection (%s)", client, exc)
        finally:
            with self._active_lock:
                self._active -= 1
        LOG.info("client %d disconnected", client)

    @property
    def active_connections(self) -> int:
        with self._active_lock:
            return self._active

    # ------------------------------------------------------------------------------------------- routing
    def _answer(self, client: int, frame: bytes | str, ws) -> dict | None:
        """One reply for one frame; never raises (None = the client is gone, nothing to send)."""
        self.stats.requests += 1
        request_id, kind = "default", "infer"
        try:
            msg = decode_frame(frame)
            request_id = safe_request_id(msg)
            request = parse_request(
                msg, default_cfg_scale=self.default_cfg_scale, default_ddim_steps=self.default_ddim_steps
            )
            if isinstance(request, ControlRequest):
                kind = request.kind
                return self._control(request)
            return self._infer(client, request, ws)
        except (WireError, RequestError) as exc:
            return self._error(kind, request_id, str(exc))
        except ServerBusyError as exc:
            self.stats.busy_replies += 1
            return self._error(kind, request_id, str(exc), busy=True)
        except JobTimeoutError as exc:
            return self._error(kind, request_id, str(exc), timeout=True)
        except Exception as exc:  # a bug or a model failure: the reason goes back, the server goes on
            LOG.exception("client %d: request %r failed", client, request_id)
            return self._error(kind, request_id, f"inference failed: {type(exc).__name__}: {exc}")

    def _error(self, kind: str, request_id: Any, message: str, **extra: Any) -> dict:
        self.stats.error_replies += 1
        return error_reply(kind, request_id, message, **extra)

    def _control(self, request: ControlRequest) -> dict:
        if request.kind == "init":
            # The model is loaded once at start on the server's device; init only reports it.
            return ok_reply("init", request.request_id, {"device": str(self.engine.policy.device)})
        return ok_reply(request.kind, request.request_id)  # ping; reset (the server keeps no episode state)

    def _infer(self, client: int, request: InferRequest, ws) -> dict | None:
        if len(request.samples) > self.batcher.max_batch:  # one request must fit one forward pass
            raise RequestError(
                f"{len(request.samples)} samples in one request; this server takes at most "
                f"{self.batcher.max_batch} (max_batch)"
            )
        key = self.engine.resolve_key(request)
        job = self.batcher.submit(client, self.engine.batch_key(request), len(request.samples), request)
        start = time.perf_counter()
        normalized = self._wait(job, ws)
        if normalized is None:
            self.stats.dropped_disconnected += 1
            LOG.warning(
                "client %d disconnected mid-inference: its request %r was dropped", client, request.request_id
            )
            return None
        data: dict[str, Any] = {"normalized_actions": normalized}
        if request.dialect == STARVLA:
            data["actions"] = self.engine.unnormalize(normalized, key)
            data["unnorm_key"] = key
        data["server_seconds"] = time.perf_counter() - start
        return ok_reply("infer", request.request_id, data)

    def _wait(self, job, ws) -> np.ndarray | None:
        """The job's result; None if the client hung up meanwhile (the job is cancelled if still queued)."""
        from websockets.protocol import State

        while True:
            done, _ = futures_wait([job.future], timeout=POLL_SECONDS)
            if done:
                return job.future.result()  # the result, or the job's own error (timeout, failure)
            if ws.state is not State.OPEN:
                job.cancel()
                # It may have started already: then its answer just has nowhere to go.
                with contextlib.suppress(CancelledError, Exception):
                    job.future.result()
                return None
