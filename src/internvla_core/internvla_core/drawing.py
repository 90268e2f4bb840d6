"""Draw a grounding result on the source image (the node's ``grounding/debug_image``).

Boxes, points and traces are drawn with OpenCV on a copy of the SOURCE image, in its pixel coordinates,
one colour per object label so a box and its point match. Returns RGB uint8.
"""

from __future__ import annotations

import zlib

import numpy as np

from .grounding import GroundingResult

# colour-blind friendly palette (Okabe-Ito), RGB
PALETTE = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
)


def label_colour(label: str) -> tuple[int, int, int]:
    """A stable colour per label (crc32, not Python's salted hash, so it survives restarts)."""
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def _text(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    import cv2

    scale = max(0.35, min(canvas.shape[:2]) / 900)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y = max(h + 2, y)
    cv2.rectangle(canvas, (x, y - h - 2), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x + 1, y - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw_grounding(rgb: np.ndarray, result: GroundingResult) -> np.ndarray:
    import cv2

    canvas = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    thickness = max(1, min(canvas.shape[:2]) // 240)
    for box in result.boxes:
        colour = label_colour(box.label)
        p1, p2 = (int(round(box.x1)), int(round(box.y1))), (int(round(box.x2)), int(round(box.y2)))
        cv2.rectangle(canvas, p1, p2, colour, thickness)
        _text(canvas, box.label or "object", p1[0], p1[1] - 2, colour)
    for point in result.points:
        colour = label_colour(point.label)
        centre = (int(round(point.u)), int(round(point.v)))
        cv2.circle(canvas, centre, 3 * thickness + 2, colour, -1)
        cv2.circle(canvas, centre, 3 * thickness + 2, (0, 0, 0), 1)
        _text(canvas, point.label or "point", centre[0] + 6, centre[1] - 6, colour)
    for trace in result.traces:
        colour = label_colour(trace.label)
        pts = np.round(np.asarray(trace.points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
        if len(pts) >= 2:
            cv2.polylines(canvas, [pts], False, colour, thickness + 1, cv2.LINE_AA)
            cv2.arrowedLine(
                canvas, tuple(pts[-2, 0]), tuple(pts[-1, 0]), colour, thickness + 1, tipLength=0.3
            )
        elif len(pts) == 1:
            cv2.circle(canvas, tuple(pts[0, 0]), 3, colour, -1)
    caption = result.instruction if result.instruction else ""
    if result.empty:
        caption = f"{caption} | nothing grounded" if caption else "nothing grounded"
    if caption:
        _text(canvas, caption[:80], 4, canvas.shape[0] - 4, (255, 255, 255))
    return canvas
