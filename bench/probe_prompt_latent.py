"""Does the VLM's latent of the spatial prompt say where the target is? A linear probe on cached features.

    source scripts/env.sh && python bench/probe_prompt_latent.py --run runs/pg_s2 \\
        --staging data/staging/pick_green [--last 1 8]

Reads the run's `feature_cache.pt` (written by a `--freeze-vlm` stage 2: the VLM hidden states of every
training frame's prompt, one tensor per QFormer layer, left-padded so that the prompt's last token is the
last position) and the target box of every frame from the staging episodes the dataset was written from
(same order, the run's `--frame-stride`). For each layer and each window of the last K prompt tokens it
fits a ridge regression from the hidden states to the box centre on 80 % of the episodes and prints the
mean error in pixels of a 224-pixel image on the other 20 %, next to always predicting the mean.

Why this exists: spatial prompting works when the prompt's latent carries "where to act". This says how
well it does for a given stage-1 run (`--spatial-qa` or not), cheaply and without training anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PIXELS = 224


def box_centres(staging: Path, frame_stride: int) -> tuple[np.ndarray, np.ndarray]:
    """([N, 2] target box centre in pixels (NaN out of view), [N] episode index) in the cache's order."""
    from internvla_learning.episode import load_episode
    from internvla_learning.training.data import _normalised_target_boxes

    centres, episodes = [], []
    for index, path in enumerate(sorted(staging.glob("episodes/*.npz"))):
        ep = load_episode(path)
        boxes = _normalised_target_boxes(ep, ep.annotation_camera)[::frame_stride]
        centres.append(np.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], axis=1) / 2 * PIXELS)
        episodes.append(np.full(len(boxes), index))
    return np.concatenate(centres), np.concatenate(episodes)


def ridge_errors(x: np.ndarray, y: np.ndarray, test: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(probe error [2], mean-predictor error [2]) in pixels on the ``test`` rows."""
    train = ~test
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    target = y[train] - y[train].mean(0)
    weights = np.linalg.solve(x[train].T @ x[train] + lam * np.eye(x.shape[1]), x[train].T @ target)
    predicted = x[test] @ weights + y[train].mean(0)
    return np.abs(predicted - y[test]).mean(0), np.abs(y[test] - y[train].mean(0)).mean(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a --freeze-vlm stage-2 run directory (has feature_cache.pt)")
    p.add_argument(
        "--staging", required=True, help="staging dir of the episodes its dataset was written from"
    )
    p.add_argument("--last", type=int, nargs="+", default=[1, 8], help="windows of the last K prompt tokens")
    p.add_argument("--ridge", type=float, default=100.0)
    args = p.parse_args(argv)

    import torch

    run = Path(args.run)
    cache_path = run / "feature_cache.pt"
    if not cache_path.is_file():
        print(
            f"probe_prompt_latent: {cache_path} not found (train stage 2 with --freeze-vlm)", file=sys.stderr
        )
        return 2
    stride = json.loads((run / "train_args.json").read_text()).get("frame_stride", 1)
    centres, episodes = box_centres(Path(args.staging), stride)
    hidden = torch.load(cache_path, weights_only=False)["hidden"]
    if len(hidden[0]) != len(centres):
        print(
            f"probe_prompt_latent: the cache has {len(hidden[0])} frames, the staging episodes give "
            f"{len(centres)} at stride {stride}: not the episodes this run was trained on",
            file=sys.stderr,
        )
        return 2
    seen = np.isfinite(centres).all(axis=1)
    test = (episodes % 5 == 0)[seen]
    print(f"{run}: {int(seen.sum())} frames with the target in view, {len(np.unique(episodes))} episodes")
    for layer, states in enumerate(hidden):
        for k in args.last:
            x = states[:, -k:].float().flatten(1).numpy()[seen]
            error, baseline = ridge_errors(x, centres[seen], test, args.ridge)
            print(
                f"  layer {layer}, last {k} token(s): error x {error[0]:.1f} y {error[1]:.1f} px "
                f"(always-the-mean {baseline[0]:.1f} / {baseline[1]:.1f} px)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
