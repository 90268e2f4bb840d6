"""The two request dialects the server understands, validated into one internal shape.

InternVLA-M1 (``deployment/model_server`` of InternRobotics/InternVLA-M1; spec section 6):
    ``{"type": "ping"|"init"|"reset"|"infer", "request_id", "payload"}`` or a flat map routed by key
    (``device`` = init, ``reset`` = reset, anything else = infer). The infer payload carries
    ``batch_images`` (one list of HxWx3 uint8 views per sample), ``instructions``, ``unnorm_key``,
    ``do_sample``, optional ``cfg_scale``/``use_ddim``/``num_ddim_steps``; the reply's
    ``data.normalized_actions`` is [B, T, A] and the client un-normalises.
starVLA (``deployment/model_server`` of starVLA/starVLA):
    a flat map ``{"examples": [{"image": [...], "lang": str, "state"?}], "unnorm_key", "do_sample",
    "use_ddim", "num_ddim_steps"}`` (a typed envelope is accepted too); the server un-normalises with the
    chosen key and answers ``data.actions`` [B, T, D].

Replies carry ``status``/``ok``/``type``/``request_id`` in both dialects. Errors are ordinary replies
(``status: "error"``) with the reason in ``message`` (M1's clients and ours read it) and in
``error.message`` (starVLA's), and the connection stays open; upstream's servers instead send a
traceback text frame and close, which ends every robot's episode on one bad request.

``seed`` (an int in the infer payload, either dialect) is our extension: the request's noise is drawn
from it, so a query gives the same chunk alone or batched (the tests rely on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

M1 = "internvla-m1"
STARVLA = "starvla"

MIN_IMAGE_SIDE = 2
MAX_IMAGE_SIDE = 4096
MAX_VIEWS = 8
MAX_INSTRUCTION_CHARS = 2000


class RequestError(ValueError):
    """A request that cannot be served; the text is the reason sent back to the client."""


@dataclass
class Sample:
    """One observation: its camera views (HxWx3 uint8 RGB) and instruction."""

    views: list[np.ndarray]
    instruction: str


@dataclass
class InferRequest:
    dialect: str
    request_id: Any
    samples: list[Sample]
    unnorm_key: str | None
    cfg_scale: float
    num_ddim_steps: int
    seed: int | None = None


@dataclass
class ControlRequest:
    """ping / init / reset: answered at once, never queued behind inference."""

    kind: str
    request_id: Any
    payload: dict = field(default_factory=dict)


REPLY_TYPES = {"ping": "pong", "init": "init_result", "reset": "reset_result", "infer": "inference_result"}


def ok_reply(kind: str, request_id: Any, data: dict | None = None) -> dict:
    reply = {"status": "ok", "ok": True, "type": REPLY_TYPES.get(kind, kind), "request_id": request_id}
    if data is not None:
        reply["data"] = data
    return reply


def error_reply(kind: str, request_id: Any, message: str, **extra: Any) -> dict:
    """Both dialects' error shapes at once; ``extra`` adds machine-readable flags such as ``busy``."""
    reply = {
        "status": "error",
        "ok": False,
        "type": REPLY_TYPES.get(kind, "error"),
        "request_id": request_id,
        "message": message,
        "error": {"message": message},
    }
    reply.update(extra)
    return reply


def safe_request_id(msg: Any) -> Any:
    """The request id to echo: only plain scalars travel back (never a client-sent blob)."""
    rid = msg.get("request_id", "default") if isinstance(msg, dict) else "default"
    return rid if isinstance(rid, (str, int, float, bool)) or rid is None else "default"


def parse_request(msg: dict, *, default_cfg_scale: float = 1.5, default_ddim_steps: int = 10):
    """An :class:`InferRequest` or :class:`ControlRequest` from a decoded frame, else :class:`RequestError`."""
    request_id = safe_request_id(msg)
    kind = msg.get("type")
    if kind is not None and not isinstance(kind, str):
        raise RequestError(f"'type' must be a string, got {type(kind).__name__}")
    payload = msg.get("payload", msg)
    if not isinstance(payload, dict):
        raise RequestError(f"'payload' must be a map, got {type(payload).__name__}")
    if kind in ("ping", "init", "reset"):
        return ControlRequest(kind, request_id, payload)
    if kind in (None, "default"):  # M1's flat-map routing by key
        if "device" in msg:
            return ControlRequest("init", request_id, payload)
        if "reset" in msg:
            return ControlRequest("reset", request_id, payload)
    elif kind not in ("infer", "predict_action"):
        raise RequestError(f"unsupported request type '{kind}' (ping, init, reset, infer)")
    return _parse_infer(payload, request_id, default_cfg_scale, default_ddim_steps)


def _parse_infer(payload: dict, request_id: Any, default_cfg: float, default_steps: int) -> InferRequest:
    if "examples" in payload:
        dialect, samples = STARVLA, _starvla_samples(payload["examples"])
    elif "batch_images" in payload:
        dialect, samples = M1, _m1_samples(payload)
    else:
        raise RequestError(
            "an infer request needs 'batch_images' + 'instructions' (InternVLA-M1) or 'examples' (starVLA); "
            f"got keys {sorted(str(k) for k in payload)[:20]}"
        )
    n_views = {len(s.views) for s in samples}
    if len(n_views) != 1:
        raise RequestError(f"every sample of a request needs the same number of views, got {sorted(n_views)}")
    if payload.get("use_ddim", True) is False:
        raise RequestError("use_ddim=False (DDPM sampling) is not implemented; upstream's path crashes too")
    unnorm_key = payload.get("unnorm_key")
    if unnorm_key is not None and not isinstance(unnorm_key, str):
        raise RequestError(f"unnorm_key must be a string or nil, got {type(unnorm_key).__name__}")
    cfg_scale = _number(payload, "cfg_scale", default_cfg, 0.0, 20.0)
    steps = _number(payload, "num_ddim_steps", default_steps, 1, 100)
    if steps != int(steps):
        raise RequestError(f"num_ddim_steps must be an integer, got {steps}")
    seed = payload.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise RequestError(f"seed must be a non-negative integer, got {seed!r}")
    return InferRequest(dialect, request_id, samples, unnorm_key or None, float(cfg_scale), int(steps), seed)


def _number(payload: dict, name: str, default: float, low: float, high: float) -> float:
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RequestError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not low <= value <= high:
        raise RequestError(f"{name} must be in [{low:g}, {high:g}], got {value:g}")
    return value


def _m1_samples(payload: dict) -> list[Sample]:
    batch_images, instructions = payload.get("batch_images"), payload.get("instructions")
    if not isinstance(batch_images, list) or not batch_images:
        raise RequestError("batch_images must be a non-empty list (one list of views per sample)")
    if isinstance(instructions, str):
        instructions = [instructions]
    if not isinstance(instructions, list) or len(instructions) != len(batch_images):
        count = len(instructions) if isinstance(instructions, list) else type(instructions).__name__
        raise RequestError(
            f"instructions must be a list with one string per sample ({len(batch_images)}), got {count}"
        )
    return [
        Sample(_views(views, f"batch_images[{i}]"), _instruction(text, f"instructions[{i}]"))
        for i, (views, text) in enumerate(zip(batch_images, instructions))
    ]


def _starvla_samples(examples: Any) -> list[Sample]:
    if not isinstance(examples, list) or not examples:
        raise RequestError("examples must be a non-empty list of maps with 'image' and 'lang'")
    samples = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise RequestError(f"examples[{i}] must be a map, got {type(example).__name__}")
        state = example.get("state")
        if state is not None and not (isinstance(state, np.ndarray) and state.dtype.kind in "biuf"):
            raise RequestError(f"examples[{i}].state must be a numeric array (InternVLA-M1 does not use it)")
        samples.append(
            Sample(
                _views(example.get("image"), f"examples[{i}].image"),
                _instruction(example.get("lang"), f"examples[{i}].lang"),
            )
        )
    return samples


def _views(views: Any, where: str) -> list[np.ndarray]:
    if isinstance(views, np.ndarray):
        views = [views]
    if not isinstance(views, list) or not views:
        raise RequestError(f"{where} must be a non-empty list of HxWx3 uint8 images")
    if len(views) > MAX_VIEWS:
        raise RequestError(f"{where} has {len(views)} views; at most {MAX_VIEWS}")
    for j, view in enumerate(views):
        if not isinstance(view, np.ndarray):
            raise RequestError(f"{where}[{j}] must be a numpy array, got {type(view).__name__}")
        if view.dtype != np.uint8:
            raise RequestError(f"{where}[{j}] must be uint8 RGB, got dtype {view.dtype}")
        if view.ndim != 3 or view.shape[2] != 3:
            raise RequestError(f"{where}[{j}] must be HxWx3 RGB, got shape {list(view.shape)}")
        if not (
            MIN_IMAGE_SIDE <= view.shape[0] <= MAX_IMAGE_SIDE
            and MIN_IMAGE_SIDE <= view.shape[1] <= MAX_IMAGE_SIDE
        ):
            raise RequestError(
                f"{where}[{j}] is {view.shape[1]}x{view.shape[0]}; sides must be in {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE}"
            )
        if max(view.shape[:2]) / min(view.shape[:2]) > 50:
            raise RequestError(f"{where}[{j}] has an extreme aspect ratio {view.shape[1]}x{view.shape[0]}")
    return list(views)


def _instruction(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise RequestError(f"{where} must be a non-empty string")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise RequestError(f"{where} has {len(text)} characters; at most {MAX_INSTRUCTION_CHARS}")
    return text
