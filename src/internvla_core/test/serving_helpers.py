"""Shared by the test_serve_* files: a tiny-model server, and raw clients that speak the upstream wire
formats byte for byte (written from InternVLA-M1's and starVLA's client code, not from ours)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import msgpack
import numpy as np


def pack_upstream(obj) -> bytes:
    """Upstream clients' encoding: arrays as maps with bytes keys, everything else plain msgpack."""

    def default(value):
        if isinstance(value, np.ndarray):
            return {
                b"__ndarray__": True,
                b"data": value.tobytes(),
                b"dtype": value.dtype.str,
                b"shape": value.shape,
            }
        if isinstance(value, np.generic):
            return {b"__npgeneric__": True, b"data": value.item(), b"dtype": value.dtype.str}
        raise TypeError(type(value))

    return msgpack.packb(obj, default=default)


def unpack_upstream(frame: bytes):
    def hook(obj):
        if b"__ndarray__" in obj:
            return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
        if b"__npgeneric__" in obj:
            return np.dtype(obj[b"dtype"]).type(obj[b"data"])
        return obj

    return msgpack.unpackb(frame, object_hook=hook)


class WireClient:
    """What both upstreams' ``WebsocketClientPolicy`` do: connect (optional ``Api-Key`` header, no
    compression), read the metadata frame, then one msgpack frame out, one frame back."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self.ws = connect(
            url, compression=None, max_size=None, additional_headers=headers, open_timeout=10, legacy=True
        )
        self.metadata = unpack_upstream(self.ws.recv(timeout=10))

    def send_raw(self, frame: bytes | str):
        self.ws.send(frame)
        reply = self.ws.recv(timeout=60)
        return reply if isinstance(reply, str) else unpack_upstream(reply)

    def call(self, obj: dict):
        return self.send_raw(pack_upstream(obj))

    def close(self) -> None:
        self.ws.close()


def m1_infer(views: list[np.ndarray], instruction: str, **extra) -> dict:
    """The flat infer map InternVLA-M1's SimplerEnv/LIBERO clients send (newer model interfaces)."""
    payload = {
        "batch_images": [views],
        "instructions": [instruction],
        "unnorm_key": "oxe_bridge",
        "do_sample": False,
        "cfg_scale": 1.5,
        "use_ddim": True,
        "num_ddim_steps": 10,
    }
    payload.update(extra)
    return payload


def starvla_infer(views: list[np.ndarray], instruction: str, **extra) -> dict:
    """The flat map starVLA's ``model2*_interface`` clients send."""
    request = {
        "examples": [{"image": views, "lang": instruction}],
        "unnorm_key": "oxe_bridge",
        "do_sample": False,
        "use_ddim": True,
        "num_ddim_steps": 10,
    }
    request.update(extra)
    return request


def image(seed: int, height: int = 64, width: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@contextlib.contextmanager
def serving(policy, **kwargs) -> Iterator:
    """A started server on a free localhost port around ``policy``; closed afterwards."""
    from internvla_core.serving.engine import BatchEngine
    from internvla_core.serving.server import PolicyServer

    kwargs.setdefault("port", 0)
    server = PolicyServer(BatchEngine(policy, seed=0), **kwargs).start()
    try:
        yield server
    finally:
        server.close()
