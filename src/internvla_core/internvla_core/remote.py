"""Client of upstream InternVLA-M1's websocket policy server (model spec section 6).

So a robot PC without a GPU can use a GPU box that already runs upstream's server. Facts kept:
binary msgpack frames; numpy arrays as maps with *bytes* keys ``__ndarray__``/``data``/``dtype``/
``shape`` (scalars ``__npgeneric__``); object, void and complex dtypes refused; on connect the server
first sends its metadata; requests ``{"type", "request_id", "payload"}``; replies ``{"status", "ok",
"type", "request_id", "data"?, "message"?}``; an error arrives as a *text* frame (the traceback) and the
server closes with 1011; optional ``Authorization: Api-Key <key>`` header; ping interval/timeout 20 s.
The infer payload is what upstream's clients send; actions come back normalised and are
un-normalised client-side (``backends.RemoteBackend``).

starVLA's server speaks the same transport but another payload (``examples`` of ``image``/``lang``) and
answers un-normalised ``actions``; its metadata lists ``available_unnorm_keys`` and no
``protocols``. :meth:`RemotePolicyClient.infer_chunk` picks the dialect from the metadata, so the same
client works with upstream's M1 server, starVLA's, and ours (``internvla-serve`` speaks both and
advertises ``protocols``; we use its M1 dialect).
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

DEFAULT_PORT = 10093


class RemoteError(RuntimeError):
    """The remote policy server failed or answered something we cannot use."""


class RemoteServerError(RemoteError):
    """The server ran the request and failed (its traceback or error reply): retrying would fail again."""


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"unsupported dtype for the policy protocol: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _unpack_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_pack_default)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_unpack_hook)


@dataclass
class RemoteChunk:
    """One chunk as a server returned it: normalised (M1 dialect) or un-normalised (starVLA's), [T, A]."""

    normalized: np.ndarray | None
    actions: np.ndarray | None
    unnorm_key: str | None = None


def _error_text(reply: dict) -> str:
    """M1 servers put the reason in ``message``, starVLA's in ``error.message``."""
    error = reply.get("error")
    nested = error.get("message") if isinstance(error, dict) else None
    return str(reply.get("message") or nested or "no message")


def _one_chunk(value: Any, name: str) -> np.ndarray:
    actions = np.asarray(value, dtype=np.float32 if name == "normalized_actions" else np.float64)
    if actions.ndim == 3:
        actions = actions[0]
    if actions.ndim != 2:
        raise RemoteError(f"{name} has shape {actions.shape}, expected [B, T, A] or [T, A]")
    return actions


def _sampling_options(
    unnorm_key: str | None, cfg_scale: float, num_ddim_steps: int, seed: int | None
) -> dict:
    """The infer fields both request formats share: deterministic DDIM with CFG, the seed only when given
    (upstream's servers do not know it)."""
    options = {
        "unnorm_key": unnorm_key,
        "do_sample": False,
        "cfg_scale": float(cfg_scale),
        "use_ddim": True,
        "num_ddim_steps": int(num_ddim_steps),
    }
    if seed is not None:
        options["seed"] = int(seed)
    return options


class RemotePolicyClient:
    """Synchronous client; reconnects with backoff when the connection drops."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        open_timeout: float = 150.0,
        reply_timeout: float = 60.0,
        retries: int = 3,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"remote_url must start with ws:// or wss://, got '{url}'")
        self.url = url
        self.api_key = api_key or None
        self.open_timeout = open_timeout
        self.reply_timeout = reply_timeout
        self.retries = retries
        self.metadata: dict = {}
        self._ws = None
        self._ids = itertools.count()

    def connect(self) -> dict:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        try:
            self._ws = connect(
                self.url,
                compression=None,
                max_size=None,
                additional_headers=headers,
                open_timeout=self.open_timeout,
                ping_interval=20,
                ping_timeout=20,
                **self._legacy_kwargs(connect),
            )
        except (OSError, TimeoutError) as exc:
            self._ws = None
            raise RemoteError(f"cannot reach the policy server at {self.url}: {exc}") from exc
        except Exception as exc:  # websockets raises its own exception types
            self._ws = None
            raise RemoteError(f"websocket handshake with {self.url} failed: {exc}") from exc
        try:
            first = self._ws.recv(timeout=self.open_timeout)
        except TimeoutError as exc:
            self.close()
            raise RemoteError(
                f"policy server at {self.url} accepted the connection but sent no metadata within "
                f"{self.open_timeout:g} s (is it still loading the model?)"
            ) from exc
        except Exception as exc:  # closed before the metadata frame
            self.close()
            raise RemoteError(
                f"policy server at {self.url} closed before sending its metadata: {exc}"
            ) from exc
        if isinstance(first, str):
            self.close()
            raise RemoteError(f"policy server sent an error instead of its metadata: {first[:500]}")
        self.metadata = unpackb(first) or {}
        return self.metadata

    @staticmethod
    def _legacy_kwargs(connect) -> dict:
        """websockets >= 16 wants ``legacy=True`` for a connection used outside a ``with`` block."""
        import inspect

        return {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            finally:
                self._ws = None

    def request(self, kind: str, payload: dict) -> dict:
        """Send one request and return its reply's data (retries with reconnection on transport errors)."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                if self._ws is None:
                    self.connect()
                return self._exchange(kind, payload)
            except RemoteServerError:
                raise
            except RemoteError as exc:
                if attempt == self.retries:
                    raise
                last = exc
            except Exception as exc:  # connection closed mid-request: reconnect
                last = exc
                self.close()
            time.sleep(min(2.0, 0.2 * 2**attempt))
        raise RemoteError(f"policy server at {self.url} unavailable after {self.retries + 1} tries: {last}")

    def _exchange(self, kind: str, payload: dict) -> dict:
        request_id = f"{uuid.uuid4().hex[:8]}-{next(self._ids)}"
        self._ws.send(packb({"type": kind, "request_id": request_id, "payload": payload}))
        reply = self._ws.recv(timeout=self.reply_timeout)
        if isinstance(reply, str):
            self.close()
            raise RemoteServerError(f"server error (the server sent its traceback): {reply[-2000:]}")
        reply = unpackb(reply)
        if not isinstance(reply, dict):
            raise RemoteError(f"unexpected reply of type {type(reply).__name__}")
        if reply.get("status") == "error" or reply.get("ok") is False:
            raise RemoteServerError(f"server error: {_error_text(reply)}")
        return reply.get("data", reply)

    def ping(self) -> float:
        start = time.perf_counter()
        self.request("ping", {})
        return time.perf_counter() - start

    def _ensure_connected(self) -> None:
        for attempt in range(self.retries + 1):
            if self._ws is not None:
                return
            try:
                self.connect()
            except RemoteError:
                if attempt == self.retries:
                    raise
                time.sleep(min(2.0, 0.2 * 2**attempt))

    @property
    def dialect(self) -> str:
        """``starvla`` for a starVLA server (un-normalises itself), else ``internvla-m1``."""
        meta = self.metadata if isinstance(self.metadata, dict) else {}
        if "available_unnorm_keys" in meta and "internvla-m1" not in (meta.get("protocols") or []):
            return "starvla"
        return "internvla-m1"

    def infer_chunk(
        self,
        images: list[np.ndarray],
        instruction: str,
        unnorm_key: str | None = None,
        cfg_scale: float = 1.5,
        num_ddim_steps: int = 10,
        seed: int | None = None,
    ) -> RemoteChunk:
        """One chunk in whichever dialect the server speaks (connects first to read its metadata)."""
        self._ensure_connected()  # the metadata says which dialect to send
        if self.dialect != "starvla":
            return RemoteChunk(
                self.infer(images, instruction, unnorm_key, cfg_scale, num_ddim_steps, seed), None, unnorm_key
            )
        payload = {
            "examples": [
                {"image": [np.ascontiguousarray(im, dtype=np.uint8) for im in images], "lang": instruction}
            ],
            **_sampling_options(unnorm_key, cfg_scale, num_ddim_steps, seed),
        }
        data = self.request("infer", payload)
        if not isinstance(data, dict) or data.get("actions") is None:
            keys = list(data) if isinstance(data, dict) else data
            raise RemoteError(f"starVLA reply has no actions (keys: {keys})")
        normalized = data.get("normalized_actions")
        return RemoteChunk(
            None if normalized is None else _one_chunk(normalized, "normalized_actions"),
            _one_chunk(data["actions"], "actions"),
            unnorm_key,
        )

    def infer(
        self,
        images: list[np.ndarray],
        instruction: str,
        unnorm_key: str | None = None,
        cfg_scale: float = 1.5,
        num_ddim_steps: int = 10,
        seed: int | None = None,
    ) -> np.ndarray:
        """Normalised actions [T, A] for one observation (batch of one, as every upstream client).

        ``seed`` (sent only when given: upstream's servers do not know it) makes ``internvla-serve`` draw
        the noise as ``predict_action(seed=...)`` does, so remote and local chunks can be compared."""
        payload = {
            "batch_images": [[np.ascontiguousarray(im, dtype=np.uint8) for im in images]],
            "instructions": [instruction],
            **_sampling_options(unnorm_key, cfg_scale, num_ddim_steps, seed),
        }
        data = self.request("infer", payload)
        actions = data.get("normalized_actions") if isinstance(data, dict) else None
        if actions is None:
            raise RemoteError(
                f"reply has no normalized_actions (keys: {list(data) if isinstance(data, dict) else data})"
            )
        return _one_chunk(actions, "normalized_actions")
