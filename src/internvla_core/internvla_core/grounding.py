"""Grounding prompts, typed results and a tolerant parser for InternVLA-M1's chat answers.

Why this module exists: upstream's ``chat_with_M1`` returns free text. The repo ships no prompt templates
for points or traces, no parser and no coordinate convention (spec section 4). We follow the base
Qwen2.5-VL convention, which M1's spatial pre-training builds on: JSON objects with ``bbox_2d`` /
``point_2d`` (and, for traces, a list of points) in **absolute pixels of the processor-resized image**
(the "model input" size, multiples of 28). Results are rescaled to the SOURCE image's pixels here.

Pure Python (no torch import), so nodes and tests can parse text without loading a model.

Prompts live in ONE place, :data:`GROUNDING_PROMPTS`, and are built by :func:`grounding_prompt`; pass
``prompts=`` to override them (e.g. to experiment with a fine-tuned model's wording). The box prompt
follows upstream's README example ("Give the bounding box for the apple.").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GROUNDING_KINDS: tuple[str, ...] = ("box", "point", "trace")

GROUNDING_PROMPTS: dict[str, str] = {
    # Upstream README's example question, completed with Qwen2.5-VL's JSON output convention.
    "box": 'Give the bounding box for {target}. Output it in JSON format as [{{"bbox_2d": [x1, y1, x2, y2], '
    '"label": "..."}}].',
    "point": 'Point to {target}. Output the point in JSON format as [{{"point_2d": [x, y], "label": "..."}}].',
    "trace": "Draw the trajectory the robot gripper should follow for the task: {target}. Output it in JSON "
    'format as [{{"trace": [[x1, y1], [x2, y2], ...], "label": "..."}}] with up to 8 points.',
}
"""Prompt template per kind; ``{target}`` is the instruction / object phrase. Coordinates are requested in
pixels of the image the model sees (Qwen2.5-VL convention)."""


def grounding_prompt(kind: str, target: str, prompts: Mapping[str, str] | None = None) -> str:
    """The question asked for one kind; ``prompts`` overrides entries of :data:`GROUNDING_PROMPTS`."""
    table = {**GROUNDING_PROMPTS, **(prompts or {})}
    if kind not in table:
        raise ValueError(f"unknown grounding kind '{kind}'; expected one of {sorted(table)}")
    target = target.strip().rstrip(".")
    return table[kind].format(target=target)


@dataclass
class GroundedBox:
    """Axis-aligned box in source-image pixels (x right, y down)."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.x1 + self.x2), 0.5 * (self.y1 + self.y2))


@dataclass
class GroundedPoint:
    """A point (u right, v down) in source-image pixels."""

    label: str
    u: float
    v: float


@dataclass
class GroundedTrace:
    """An ordered 2-D path (e.g. the gripper's intended trajectory) in source-image pixels."""

    label: str
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class GroundingResult:
    """Everything one ``ground()`` call produced; ``error`` is set (never raised) when text was unusable."""

    instruction: str
    kinds: tuple[str, ...]
    boxes: list[GroundedBox] = field(default_factory=list)
    points: list[GroundedPoint] = field(default_factory=list)
    traces: list[GroundedTrace] = field(default_factory=list)
    raw_text: dict[str, str] = field(default_factory=dict)
    image_size: tuple[int, int] = (0, 0)
    model_input_size: tuple[int, int] = (0, 0)
    error: str | None = None
    inference_time: float = 0.0

    @property
    def empty(self) -> bool:
        return not (self.boxes or self.points or self.traces)


# ----------------------------------------------------------------------------------------------- parsing

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_NUMBER = r"-?\d+(?:\.\d+)?"
_BARE_BOX = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
_BARE_PAIR = re.compile(rf"[\[(]\s*({_NUMBER})\s*,\s*({_NUMBER})\s*[\])]")
_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d")
_POINT_KEYS = ("point_2d", "point", "points_2d")
_TRACE_KEYS = ("trace", "trace_2d", "trajectory", "points")


def _strip_fences(text: str) -> str:
    match = _FENCE.search(text)
    return match.group(1) if match else text


def _close_truncated_json(text: str) -> Any:
    """Parse JSON whose tail was cut (generation hit max_new_tokens): drop the incomplete last element."""
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return None
    body = text[start:]
    # Try successively shorter prefixes ending after a complete object/number, then close open brackets.
    for cut in range(len(body), 0, -1):
        if body[cut - 1] not in '}]0123456789"':
            continue
        prefix = body[:cut]
        stack: list[str] = []
        in_string = False
        escaped = False
        for ch in prefix:
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
                continue
            if ch == '"':
                in_string = True
            elif ch in "[{":
                stack.append("]" if ch == "[" else "}")
            elif ch in "]}":
                if not stack:
                    break
                stack.pop()
        if in_string:
            continue
        candidate = prefix + "".join(reversed(stack))
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return None


def _load_json_lenient(text: str) -> Any:
    body = _strip_fences(text).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        pass
    # JSON embedded in prose: the span from the first opening bracket to the last matching closer.
    starts = [i for i in (body.find("["), body.find("{")) if i >= 0]
    if starts:
        i = min(starts)
        j = body.rfind("]" if body[i] == "[" else "}")
        if i < j:
            try:
                return json.loads(body[i : j + 1])
            except json.JSONDecodeError:
                pass
    return _close_truncated_json(body)


def _iter_dicts(data: Any) -> Iterable[dict[str, Any]]:
    if isinstance(data, dict):
        yield data
    elif isinstance(data, list):
        for item in data:
            yield from _iter_dicts(item)


def _as_numbers(value: Any, n: int) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == n:
        try:
            nums = [float(v) for v in value]
        except (TypeError, ValueError):
            return None
        return nums if all(math.isfinite(v) for v in nums) else None
    return None


def _as_pairs(value: Any) -> list[tuple[float, float]] | None:
    if not isinstance(value, (list, tuple)):
        return None
    pairs = []
    for item in value:
        if isinstance(item, dict):
            item = next((item[k] for k in _POINT_KEYS if k in item), None)
        nums = _as_numbers(item, 2)
        if nums is None:
            return None
        pairs.append((nums[0], nums[1]))
    return pairs


@dataclass
class ParsedModelCoords:
    """Parser output in model-input pixels, before rescaling."""

    boxes: list[tuple[str, list[float]]] = field(default_factory=list)
    points: list[tuple[str, list[float]]] = field(default_factory=list)
    traces: list[tuple[str, list[tuple[float, float]]]] = field(default_factory=list)


def parse_grounding_text(text: str, kind: str, default_label: str = "") -> ParsedModelCoords:
    """Extract geometry of one ``kind`` from a model answer; unusable text gives an empty result.

    Accepts JSON (optionally in a ```json fence or inside prose), lists of objects, a single object,
    truncated JSON, and bare ``[x1, y1, x2, y2]`` / ``[x, y]`` lists. Never raises.
    """
    out = ParsedModelCoords()
    if not isinstance(text, str) or not text.strip():
        return out
    data = _load_json_lenient(text)
    # Structured answers: dict objects (with labels). Bare coordinate lists, in JSON or prose, are found
    # by the regex scan below over the whole text, so none is lost when several appear.
    for obj in _iter_dicts(data):
        label = str(obj.get("label", default_label))
        if kind == "box":
            for key in _BOX_KEYS:
                if (nums := _as_numbers(obj.get(key), 4)) is not None:
                    out.boxes.append((label, nums))
                    break
        elif kind == "point":
            for key in _POINT_KEYS:
                if (nums := _as_numbers(obj.get(key), 2)) is not None:
                    out.points.append((label, nums))
                    break
        elif kind == "trace":
            for key in _TRACE_KEYS:
                if (pairs := _as_pairs(obj.get(key))) is not None and pairs:
                    out.traces.append((label, pairs))
                    break
    if kind == "box" and not out.boxes:
        out.boxes = [(default_label, [float(g) for g in m.groups()]) for m in _BARE_BOX.finditer(text)]
    if kind == "point" and not out.points:
        out.points = [(default_label, [float(g) for g in m.groups()]) for m in _BARE_PAIR.finditer(text)]
    if kind == "trace" and not out.traces:
        pairs = [(float(a), float(b)) for a, b in (m.groups() for m in _BARE_PAIR.finditer(text))]
        if len(pairs) >= 2:
            out.traces.append((default_label, pairs))
    return out


# ---------------------------------------------------------------------------------------------- rescale


def _scale_clip(
    x: float, y: float, model_size: tuple[int, int], image_size: tuple[int, int]
) -> tuple[float, float]:
    mw, mh = model_size
    iw, ih = image_size
    sx = iw / mw if mw > 0 else 1.0
    sy = ih / mh if mh > 0 else 1.0
    return (min(max(x * sx, 0.0), float(iw)), min(max(y * sy, 0.0), float(ih)))


def to_source_pixels(
    parsed: ParsedModelCoords, model_input_size: tuple[int, int], image_size: tuple[int, int]
) -> tuple[list[GroundedBox], list[GroundedPoint], list[GroundedTrace]]:
    """Rescale model-input pixels (w, h) to source pixels (w, h) and clip to the image; boxes get ordered
    corners and degenerate (zero-area after clipping) boxes are dropped."""
    boxes: list[GroundedBox] = []
    for label, (a, b, c, d) in parsed.boxes:
        x1, y1 = _scale_clip(min(a, c), min(b, d), model_input_size, image_size)
        x2, y2 = _scale_clip(max(a, c), max(b, d), model_input_size, image_size)
        if x2 > x1 and y2 > y1:
            boxes.append(GroundedBox(label, x1, y1, x2, y2))
    points = [
        GroundedPoint(label, *_scale_clip(u, v, model_input_size, image_size))
        for label, (u, v) in parsed.points
    ]
    traces = [
        GroundedTrace(label, [_scale_clip(u, v, model_input_size, image_size) for u, v in pts])
        for label, pts in parsed.traces
    ]
    return boxes, points, traces


def build_grounding_result(
    instruction: str,
    kinds: Sequence[str],
    raw_text: Mapping[str, str],
    image_size: tuple[int, int],
    model_input_size: tuple[int, int],
    inference_time: float = 0.0,
    error: str | None = None,
) -> GroundingResult:
    """Parse every kind's answer into one result; sets ``error`` when a kind yields nothing usable."""
    result = GroundingResult(
        instruction=instruction,
        kinds=tuple(kinds),
        raw_text=dict(raw_text),
        image_size=tuple(image_size),
        model_input_size=tuple(model_input_size),
        inference_time=inference_time,
        error=error,
    )
    problems = [error] if error else []
    for kind in kinds:
        text = raw_text.get(kind, "")
        boxes, points, traces = to_source_pixels(
            parse_grounding_text(text, kind, default_label=instruction), model_input_size, image_size
        )
        result.boxes += boxes
        result.points += points
        result.traces += traces
        if not (boxes if kind == "box" else points if kind == "point" else traces):
            problems.append(f"no {kind} found in model answer {text[:80]!r}")
    result.error = "; ".join(problems) if problems else None
    return result


# ---------------------------------------------------------------------------------------------- answers


def format_grounding_answer(
    kind: str,
    value: Sequence[float] | Sequence[Sequence[float]],
    label: str = "",
    image_size: tuple[int, int] | None = None,
    model_input_size: tuple[int, int] | None = None,
    decimals: int | None = 0,
) -> str:
    """The model answer for one box / point / trace in the JSON format :func:`parse_grounding_text`
    reads: the inverse of ``parse_grounding_text`` + :func:`to_source_pixels`.

    ``value``: box [x1, y1, x2, y2], point [u, v] or trace [[u, v], ...] in SOURCE image pixels (w, h
    ``image_size``), rescaled to model-input pixels (``model_input_size``, default: the image size) and
    clipped to that image. ``decimals`` rounds the coordinates (0: integers, the Qwen2.5-VL convention;
    None: no rounding). A value with NaN (an object out of view) gives ``"[]"``, an answer without
    geometry.
    """
    if kind not in GROUNDING_KINDS:
        raise ValueError(f"unknown grounding kind '{kind}'; expected one of {GROUNDING_KINDS}")
    image_size = tuple(image_size) if image_size is not None else None
    model_input_size = tuple(model_input_size) if model_input_size is not None else image_size
    if kind == "trace":
        pairs = [tuple(float(c) for c in p) for p in value]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise ValueError(f"a trace is a list of [u, v] pairs, got {value!r}")
        flat = [c for p in pairs for c in p]
    else:
        flat = [float(c) for c in value]
        if len(flat) != (4 if kind == "box" else 2):
            raise ValueError(f"a {kind} has {4 if kind == 'box' else 2} coordinates, got {value!r}")
    if not all(math.isfinite(c) for c in flat):
        return "[]"

    def to_model(x: float, y: float) -> list[float]:
        if image_size is not None and model_input_size is not None:
            (iw, ih), (mw, mh) = image_size, model_input_size
            x, y = x * mw / iw, y * mh / ih
            x, y = min(max(x, 0.0), float(mw)), min(max(y, 0.0), float(mh))
        if decimals is None:
            return [x, y]
        if decimals == 0:
            return [int(round(x)), int(round(y))]
        return [round(x, decimals), round(y, decimals)]

    if kind == "box":
        x1, y1, x2, y2 = flat
        geometry: dict[str, Any] = {
            "bbox_2d": to_model(min(x1, x2), min(y1, y2)) + to_model(max(x1, x2), max(y1, y2))
        }
    elif kind == "point":
        geometry = {"point_2d": to_model(*flat)}
    else:
        geometry = {"trace": [to_model(u, v) for u, v in pairs]}
    return json.dumps([{**geometry, "label": label}])
