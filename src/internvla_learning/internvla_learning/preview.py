"""A picture of what a dataset teaches: sample frames with their ground-truth grounding drawn on them.

    python -m internvla_learning.preview DATASET_OR_STAGING_DIR --out grounding_samples.png [--frames 8]

Reads a LeRobot v3.0 dataset (``meta/info.json``) or a staging directory of ``*.npz`` episodes, picks
frames spread over the episodes (first, middle and late frames of each, in order), draws the target and
container boxes, the grasp and place points and the future end-effector trace with the same overlay the
demo's video uses (:func:`internvla_core.drawing.draw_grounding`), and writes one PNG grid with the
instruction under each frame. Boxes are drawn only where the object is visible (``*_visible`` > 0).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .episode import Episode, load_episode


def grounding_overlay(episode: Episode, frame: int, camera: str | None = None) -> np.ndarray:
    """The frame of ``camera`` (default: the annotated one) with its ground truth drawn."""
    from internvla_core.drawing import draw_grounding
    from internvla_core.grounding import GroundedBox, GroundedPoint, GroundedTrace, GroundingResult

    camera = camera or episode.annotation_camera
    image = episode.images[camera][frame]
    labels = episode.grounding
    result = GroundingResult(instruction=episode.instruction, kinds=("box", "point", "trace"))
    if labels is not None:
        names = episode.metadata.get("object_names", {}) if isinstance(episode.metadata, dict) else {}
        for key, box, visible in (
            ("target", labels.target_box[frame], labels.target_visible[frame]),
            ("container", labels.container_box[frame], labels.container_visible[frame]),
        ):
            if float(visible) > 0 and np.all(np.isfinite(box)):
                result.boxes.append(GroundedBox(str(names.get(key, key)), *map(float, box)))
        for key, point in (("grasp", labels.grasp_point[frame]), ("place", labels.place_point[frame])):
            if np.all(np.isfinite(point)):
                result.points.append(GroundedPoint(key, float(point[0]), float(point[1])))
        trace = labels.trace[frame]
        trace = trace[np.all(np.isfinite(trace), axis=1)]
        if len(trace) >= 2:
            result.traces.append(GroundedTrace("trace", [(float(u), float(v)) for u, v in trace]))
    return draw_grounding(image, result)


def _episodes(source: Path) -> Iterator[Episode]:
    if (source / "meta" / "info.json").exists():
        from .lerobot_read import read_lerobot_v3

        yield from read_lerobot_v3(source)
        return
    files = sorted(source.glob("*.npz")) or sorted(source.glob("episodes/*.npz"))
    if not files:
        raise FileNotFoundError(
            f"{source}: neither a LeRobot v3.0 dataset (meta/info.json) nor staged *.npz episodes"
        )
    for path in files:
        yield load_episode(path)


def sample_tiles(episodes: Iterable[Episode], frames: int) -> list[tuple[np.ndarray, str]]:
    """Up to ``frames`` annotated frames: three per episode (start, middle, near the end)."""
    tiles: list[tuple[np.ndarray, str]] = []
    for episode in episodes:
        n = episode.length
        for index in sorted({0, n // 2, max(0, n - 1 - n // 8)}):
            if len(tiles) >= frames:
                return tiles
            # the overlay already writes the instruction on the frame: the caption says where we are
            caption = f"{episode.robot} seed {episode.seed}, frame {index + 1}/{n}"
            tiles.append((grounding_overlay(episode, index), caption))
    return tiles


def write_grid(tiles: list[tuple[np.ndarray, str]], out: Path, columns: int = 4) -> Path:
    """Tiles in a grid with a caption strip under each; PNG."""
    import cv2
    from PIL import Image

    if not tiles:
        raise ValueError("no frames to draw")
    height, width = tiles[0][0].shape[:2]
    caption = 18
    rows = math.ceil(len(tiles) / columns)
    canvas = np.full((rows * (height + caption), min(columns, len(tiles)) * width, 3), 255, np.uint8)
    for i, (image, text) in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = r * (height + caption), c * width
        canvas[y : y + height, x : x + width] = cv2.resize(image, (width, height))
        scale = 0.33 if width < 300 else 0.4
        cv2.putText(canvas, text[: int(width / 5.5)], (x + 3, y + height + 13), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "source", type=Path, help="LeRobot v3.0 dataset or staging directory of *.npz episodes"
    )
    parser.add_argument("--out", type=Path, default=Path("grounding_samples.png"), help="PNG to write")
    parser.add_argument("--frames", type=int, default=8, help="how many frames to draw")
    parser.add_argument("--columns", type=int, default=4, help="frames per row")
    args = parser.parse_args(argv)
    try:
        tiles = sample_tiles(_episodes(args.source), args.frames)
        path = write_grid(tiles, args.out, args.columns)
    except (FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"preview: {exc}\n")
    print(f"wrote {path} ({len(tiles)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
