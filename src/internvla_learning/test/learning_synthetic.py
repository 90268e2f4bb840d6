"""Synthetic episodes for the dataset tests: a coloured square moving over a plain background, smooth
random-walk states/actions, a gripper that closes half way, and grounding labels with out-of-view gaps."""

from __future__ import annotations

import numpy as np
from internvla_learning.episode import Episode, GroundingLabels, ViewLabels

JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
COLOURS = [(230, 40, 40), (40, 200, 60), (40, 80, 230), (230, 200, 40)]


def moving_square(length: int, size: int, seed: int, colour) -> np.ndarray:
    frames = np.empty((length, size, size, 3), np.uint8)
    frames[:] = (30, 30, 40)
    side = size // 4
    for t in range(length):
        x = int((seed * 7 + 2 * t) % (size - side))
        y = int((seed * 5 + t) % (size - side))
        frames[t, y : y + side, x : x + side] = colour
    return frames


def make_episode(seed: int, length: int = 20, size: int = 64, fps: float = 10.0, grounding: bool = True,
                 trace_points: int = 4, cameras=("third_person", "wrist"),
                 container: bool = False) -> Episode:  # fmt: skip
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    state_joint = np.cumsum(rng.normal(0, 0.02, (length, 7)), axis=0).astype(np.float32)
    grip = (t < length // 2).astype(np.float32)  # open, then closed
    state_ee = np.concatenate([np.cumsum(rng.normal(0, 0.01, (length, 6)), axis=0), 0.08 * grip[:, None]], 1)
    delta = np.concatenate([rng.normal(0, 0.01, (length, 6)), grip[:, None]], 1)
    action_joint = np.concatenate([state_joint + rng.normal(0, 0.01, (length, 7)), grip[:, None]], 1)
    images = {
        cam: moving_square(length, size, seed + i, COLOURS[(seed + i) % 4]) for i, cam in enumerate(cameras)
    }
    labels = None
    if grounding:
        box = np.stack([t, t + 1, t + 10, t + 12], 1).astype(np.float32) + seed
        visible = np.ones(length, np.float32)
        box[: length // 4] = np.nan  # out of view at the start
        visible[: length // 4] = 0.0
        container_box = np.full((length, 4), np.nan, np.float32)  # no container in this task
        container_visible = np.zeros(length, np.float32)
        if container:  # a plate that stays put, hidden (occluded) in the last 3 frames
            container_box[:] = np.array([30, 40, 50, 56], np.float32) + seed
            container_visible[:] = 1.0
            container_box[-3:], container_visible[-3:] = np.nan, 0.0
        grasp = np.stack([t + 3.5, t + 4.0], 1).astype(np.float32)
        place = np.full((length, 2), np.nan, np.float32)
        trace = (
            (np.arange(trace_points)[None, :, None] * 2.0 + t[:, None, None] + seed)
            .repeat(2, 2)
            .astype(np.float32)
        )
        labels = GroundingLabels(
            target_box=box, target_visible=visible, container_box=container_box,
            container_visible=container_visible, grasp_point=grasp, place_point=place, trace=trace,
            box_answer=[f'[{{"bbox_2d": [{i}, 1, 2, 3], "label": "cube"}}]' for i in range(length)],
            point_answer=[f'[{{"point_2d": [{i}, 4], "label": "grasp"}}]' for i in range(length)],
            trace_answer=['{"trace": [[1, 2], [3, 4]]}'] * length,
        )  # fmt: skip
    return Episode(
        robot="franka", embodiment="franka_real", reference_frame="base",
        instruction=["pick up the green cube", "put the red cube on the plate"][seed % 2],
        task_template=["pick_green", "put_on/plate"][seed % 2], seed=seed, fps=fps,
        timestamps=t / fps, images=images, joint_names=JOINTS, state_joint=state_joint,
        state_ee=state_ee.astype(np.float32), action_ee_delta=delta.astype(np.float32),
        action_joint=action_joint.astype(np.float32), success=bool(seed % 3), grounding=labels,
        metadata={"objects": ["cube"], "seed": seed}, view_labels=_wrist_labels(length, seed) if grounding and "wrist" in cameras else {},
    )  # fmt: skip


def _wrist_labels(length: int, seed: int) -> dict:
    """The wrist camera's view labels (what the data engine records with --wrist): a box that grows as the
    arm descends, out of view in the first frames, and the TCP's fixed image point."""
    t = np.arange(length, dtype=np.float32)
    box = np.stack([20 - t / 2, 20 - t / 2, 30 + t / 2, 30 + t / 2], 1) + seed
    visible = np.ones(length, np.float32)
    box[:2], visible[:2] = np.nan, 0.0
    point = np.tile(np.float32([32.0, 8.0]), (length, 1))
    return {"wrist": ViewLabels(box.astype(np.float32), visible, point)}
