"""Stage 0: vision pre-training of the DINO encoder on dense maps of where the target and the gripper are.

Why this stage exists: upstream's DINOv2 comes pre-trained, and its patch tokens already say what each
patch shows; the QFormer only has to pick. No pre-trained weights can be downloaded here, and the tiny
model's random DINO locates the target only coarsely (a ridge probe from its tokens errs 18.5 / 7.4 px
against 26.2 / 9.8 px for always predicting the mean; TRAINING.md). Trained from scratch on the action
loss, the QFormer's attention over those tokens stayed near uniform for 16,000 steps. This stage gives the
tiny DINO what pre-training gives the real one, from the labels the simulator records anyway.

Every patch token is taught, by a linear head that lives only in the trainer:

- ``mask``: the fraction of the patch inside the target's box (binary cross-entropy);
- ``to_target``: the vector from the patch centre to the target box's centre;
- ``to_gripper``: the vector from the patch centre to the gripper's (TCP's) image point,
  both in image fractions (MSE);
- ``gripper_state``: the gripper's height and opening, standardised over the dataset (MSE), the same at
  every patch. One camera sees "higher" and "farther" alike, and an open and a closed gripper differ by a
  few pixels; the phase of a pick (above the block, at it, holding it) is exactly these two numbers;
- ``to_container`` (datasets whose task has a container, e.g. red_on_plate's plate): the vector from the
  patch centre to the container box's centre, where the held block must go.

The two vectors are dense on purpose: every token then knows where the target and the gripper are, so
even the near-uniform attention of a freshly initialised QFormer averages them into the target's and
the gripper's place (the mean of "patch → target" over patches is the target minus a constant), and
the action expert's condition carries both from its first step. The labels depend on the task's target,
so a stage-0 run is for datasets of one target object (one task template); DINO itself never sees the
instruction.
"""

from __future__ import annotations

import numpy as np

OUTPUTS = 7  # mask logit, to_target (dx, dy), to_gripper (dx, dy), gripper state (height, opening)
CONTAINER_OUTPUTS = 2  # to_container (dx, dy), after the others, for data with a container


def head_outputs(with_container: bool) -> int:
    """The stage-0 head's width: a dataset without containers keeps the 7 outputs (and so the runs, their
    train states and their random head rows) of the recipes before containers were learned."""
    return OUTPUTS + CONTAINER_OUTPUTS * bool(with_container)


def patch_centres(grid_w: int, grid_h: int) -> np.ndarray:
    """[grid_h * grid_w, 2] patch centres (x, y) in image fractions, row-major as ViT tokens are."""
    xs = (np.arange(grid_w) + 0.5) / grid_w
    ys = (np.arange(grid_h) + 0.5) / grid_h
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def box_coverage(boxes: np.ndarray, grid_w: int, grid_h: int) -> np.ndarray:
    """[N, P] the fraction of each patch inside each box (x1, y1, x2, y2 in image fractions; NaN → 0)."""
    boxes = np.nan_to_num(np.asarray(boxes, dtype=np.float32), nan=0.0)
    x0 = np.arange(grid_w, dtype=np.float32) / grid_w
    y0 = np.arange(grid_h, dtype=np.float32) / grid_h
    ox = np.clip(np.minimum(boxes[:, None, 2], x0 + 1 / grid_w) - np.maximum(boxes[:, None, 0], x0), 0, None)
    oy = np.clip(np.minimum(boxes[:, None, 3], y0 + 1 / grid_h) - np.maximum(boxes[:, None, 1], y0), 0, None)
    cover = (oy[:, :, None] * grid_h) * (ox[:, None, :] * grid_w)  # [N, gh, gw]
    return cover.reshape(len(boxes), -1).astype(np.float32)


def dense_targets(
    boxes: np.ndarray,
    gripper: np.ndarray,
    grid_w: int,
    grid_h: int,
    gripper_state: np.ndarray | None = None,
    containers: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-patch targets of a batch: ``mask`` [N, P], ``to_target`` / ``to_gripper`` [N, P, 2], the
    validity of each frame's box / gripper point (``target_ok`` / ``gripper_ok`` [N]) and, when given,
    ``gripper_state`` [N, 2] (standardised height and opening) and, from ``containers`` [N, 4] (boxes, NaN
    where hidden), ``to_container`` [N, P, 2] with ``container_ok`` [N]."""
    centres = patch_centres(grid_w, grid_h)
    boxes = np.asarray(boxes, dtype=np.float32)
    gripper = np.asarray(gripper, dtype=np.float32)
    target_ok = np.isfinite(boxes).all(axis=1)
    gripper_ok = np.isfinite(gripper).all(axis=1)
    box_centre = np.nan_to_num(0.5 * (boxes[:, :2] + boxes[:, 2:]))
    out = {
        "mask": box_coverage(boxes, grid_w, grid_h),
        "to_target": box_centre[:, None, :] - centres[None],
        "to_gripper": np.nan_to_num(gripper)[:, None, :] - centres[None],
        "target_ok": target_ok,
        "gripper_ok": gripper_ok,
    }
    if gripper_state is not None:
        out["gripper_state"] = np.asarray(gripper_state, dtype=np.float32)
    if containers is not None:
        containers = np.asarray(containers, dtype=np.float32)
        centre = np.nan_to_num(0.5 * (containers[:, :2] + containers[:, 2:]))
        out["to_container"] = centre[:, None, :] - centres[None]
        out["container_ok"] = np.isfinite(containers).all(axis=1)
    return out


def dense_loss(outputs, targets: dict[str, np.ndarray]):
    """The stage-0 loss of head ``outputs`` [N, P, 7 or 9] against :func:`dense_targets`; returns
    (loss, parts). The mask is learned on every frame (no visible target: all zeros); each vector only
    where its point is known. The vectors are scaled ×4 (a patch is 1/16 of the image) so that their
    errors weigh like the mask's."""
    import torch
    import torch.nn.functional as F

    dev = outputs.device
    mask = torch.from_numpy(targets["mask"]).to(dev)
    mask_loss = F.binary_cross_entropy_with_logits(outputs[..., 0], mask)
    parts = {"mask": mask_loss}
    loss = mask_loss
    vectors = [("to_target", slice(1, 3), "target_ok"), ("to_gripper", slice(3, 5), "gripper_ok")]
    if "to_container" in targets:
        if outputs.shape[-1] < OUTPUTS + CONTAINER_OUTPUTS:
            raise ValueError(f"container targets need a head of {OUTPUTS + CONTAINER_OUTPUTS} outputs")
        vectors.append(("to_container", slice(OUTPUTS, OUTPUTS + CONTAINER_OUTPUTS), "container_ok"))
    for name, cols, ok_key in vectors:
        ok = torch.from_numpy(targets[ok_key]).to(dev)
        if not bool(ok.any()):
            continue
        want = torch.from_numpy(targets[name]).to(dev)[ok]
        err = F.mse_loss(4 * outputs[ok][..., cols], 4 * want)
        parts[name] = err
        loss = loss + err
    if "gripper_state" in targets:
        want = torch.from_numpy(targets["gripper_state"]).to(dev)[:, None, :]
        err = F.mse_loss(outputs[..., 5:7], want.expand(-1, outputs.shape[1], -1))
        parts["gripper_state"] = err
        loss = loss + err
    return loss, parts
