"""msgpack frames with numpy arrays, as InternVLA-M1's and starVLA's websocket clients encode them.

An array travels as a map with *bytes* keys ``__ndarray__``/``data``/``dtype``/``shape`` and a numpy
scalar as ``__npgeneric__``/``data``/``dtype``. Encoding is shared with our client (``remote.packb``);
decoding here is the server's: every frame comes from the network, so a frame that is not msgpack, an
array whose buffer does not match its shape, or a refused dtype becomes a :class:`WireError` with the
reason (never an exception from deep inside numpy or msgpack that would end the connection).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

from ..remote import packb

__all__ = ["WireError", "decode_frame", "encode_frame"]

REFUSED_DTYPE_KINDS = ("V", "O", "c")  # void, object (pickle), complex: refused by both upstreams too
MAX_ARRAY_DIMS = 8


class WireError(ValueError):
    """A frame that cannot be decoded into a request; the text says why (it goes back to the client)."""


def encode_frame(obj: Any) -> bytes:
    return packb(obj)


def _decode_array(obj: dict) -> np.ndarray:
    try:
        dtype = np.dtype(obj[b"dtype"])
    except Exception as exc:
        raise WireError(f"array has an unknown dtype {obj.get(b'dtype')!r}") from exc
    if dtype.kind in REFUSED_DTYPE_KINDS:
        raise WireError(f"array dtype {dtype} is refused (void, object and complex arrays are not accepted)")
    shape = obj.get(b"shape")
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_ARRAY_DIMS:
        raise WireError(f"array shape must be a list of at most {MAX_ARRAY_DIMS} sizes, got {shape!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise WireError(f"array shape must hold non-negative integers, got {shape!r}")
    data = obj.get(b"data")
    if not isinstance(data, bytes):
        raise WireError("array data must be bytes")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise WireError(
            f"array of shape {list(shape)} and dtype {dtype} needs {expected} bytes, the frame carries {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _decode_scalar(obj: dict) -> np.generic:
    try:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in REFUSED_DTYPE_KINDS:
            raise WireError(f"scalar dtype {dtype} is refused")
        return dtype.type(obj[b"data"])
    except WireError:
        raise
    except Exception as exc:
        raise WireError(f"cannot decode a numpy scalar: {exc}") from exc


def _object_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return _decode_array(obj)
    if b"__npgeneric__" in obj:
        return _decode_scalar(obj)
    return obj


def decode_frame(frame: bytes | str) -> dict:
    """A request map from one binary websocket frame, or :class:`WireError`."""
    if isinstance(frame, str):
        raise WireError("text frames are not requests: send binary msgpack frames")
    try:
        obj = msgpack.unpackb(frame, object_hook=_object_hook, strict_map_key=False)
    except WireError:
        raise
    except Exception as exc:  # msgpack's ExtraData/FormatError/StackError/ValueError/TypeError...
        raise WireError(f"frame is not valid msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise WireError(f"a request must be a msgpack map, got {type(obj).__name__}")
    return obj
