"""The dataset picture: ground truth drawn where it belongs, from staged episodes and from a v3 dataset."""

from __future__ import annotations

import numpy as np
from internvla_learning.episode import save_episode
from internvla_learning.preview import grounding_overlay, main
from learning_synthetic import make_episode
from PIL import Image


def test_the_overlay_draws_on_the_target_box_edge_and_leaves_far_pixels_alone():
    episode = make_episode(3, length=12, size=64)
    frame = next(i for i in range(episode.length) if episode.grounding.target_visible[i] > 0)
    drawn = grounding_overlay(episode, frame)
    original = episode.images[episode.annotation_camera][frame]
    x1, y1, _x2, y2 = np.round(episode.grounding.target_box[frame]).astype(int)
    edge = (slice(max(y1, 0), min(y2, 63) + 1), max(x1, 0))
    assert np.any(drawn[edge] != original[edge])  # the box's left edge was drawn
    assert drawn.shape == original.shape and drawn.dtype == np.uint8


def test_the_cli_writes_a_png_grid_from_a_staging_directory(tmp_path):
    for seed in (1, 2):
        save_episode(make_episode(seed, length=10, size=64), tmp_path / f"ep_{seed}.npz")
    out = tmp_path / "samples.png"
    assert main([str(tmp_path), "--out", str(out), "--frames", "5", "--columns", "3"]) == 0
    width, height = Image.open(out).size
    assert width == 3 * 64 and height == 2 * (64 + 18)
