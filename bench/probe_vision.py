"""Does a stage-0 encoder see where the target and the gripper are? Scores its dense head on held-out frames.

    source scripts/env.sh && python bench/probe_vision.py --run runs/pg_s0 \\
        --staging data/staging/heldout_pg [--episodes 20] [--every 5]

Loads the run's last checkpoint and the vision head from its `train_state/` (the head lives only in the
trainer), runs the encoder the run trained (DINO, or the VLM's vision tower after `--vision-encoder qwen`)
on every `--every`-th frame of the staging episodes (the same resizing as training),
and reads the target's centre and the gripper's point as the mean over patches of "patch centre + the
predicted vector" (the target's centre also as the mask-weighted mean of the patch centres), and the
gripper's height and opening as the mean over patches (and the container's centre, for a run that learned
one). Prints the mean error in pixels of a 224-pixel image, next to always predicting the
held-out frames' own mean (a baseline that flatters the mean), and the mask's IoU at 0.5.

Why this exists: stage 2 can only follow the block as well as DINO sees it; this measures that in
seconds, before an hour of stage 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

PIXELS = 224


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a --stage 0 run directory")
    p.add_argument("--staging", required=True, help="data engine staging dir of held-out episodes")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument(
        "--camera",
        default="",
        help="the view to score (default: the annotation camera); 'wrist' needs episodes recorded with "
        "data_engine --wrist, whose view labels it is scored against",
    )
    p.add_argument("--every", type=int, default=5, help="score every k-th frame")
    ns = p.parse_args(argv)

    import json

    import torch
    from internvla_learning.episode import load_episode
    from internvla_learning.training.data import (
        _normalised_container_boxes,
        _normalised_gripper_points,
        _normalised_target_boxes,
        dino_view,
        vlm_view,
    )
    from internvla_learning.training.train import load_model, vision_token_geometry, vision_tokens
    from internvla_learning.training.vision import OUTPUTS, box_coverage, head_outputs, patch_centres

    run = Path(ns.run)
    states = sorted((run / "train_state").glob("steps_*.pt"), key=lambda q: int(q.stem.split("_")[1]))
    if not states:
        print(f"probe_vision: {run} has no train_state (not a stage-0 run?)", file=sys.stderr)
        return 2
    step = int(states[-1].stem.split("_")[1])
    state = torch.load(states[-1], map_location="cpu", weights_only=False)
    if "vision_head" not in state:
        print(f"probe_vision: {states[-1]} holds no vision head: train it with --stage 0", file=sys.stderr)
        return 2
    model, config, _ = load_model(run / "checkpoints" / f"steps_{step}_pytorch_model.pt")
    model.eval()
    args_file = run / "train_args.json"
    encoder = (
        json.loads(args_file.read_text()).get("vision_encoder", "dino") if args_file.is_file() else "dino"
    )
    patch, channels = vision_token_geometry(model, encoder)
    outputs = int(state["vision_head"]["weight"].shape[0])  # runs before the gripper state: 5
    head = torch.nn.Linear(channels, outputs)
    head.load_state_dict(state["vision_head"])
    norm = state.get("gripper_state_norm")

    files = sorted(Path(ns.staging).glob("episodes/*.npz"))[: ns.episodes]
    got_t, want_t, got_g, want_g, ious, got_m, got_s, want_s = [], [], [], [], [], [], [], []
    got_c, want_c = [], []
    for path in files:
        ep = load_episode(path)
        cam = ns.camera or ep.annotation_camera
        boxes = _normalised_target_boxes(ep, cam)
        grippers = _normalised_gripper_points(ep, cam)
        containers = _normalised_container_boxes(ep, cam)
        states = np.asarray(ep.state_ee, dtype=np.float32)[:, [2, 6]]
        frames = list(range(0, ep.length, ns.every))
        to_input = (lambda v: v) if encoder == "qwen" else dino_view  # the VLM's own input size, or DINO's
        views = np.stack(
            [np.asarray(to_input(vlm_view(ep.images[cam][t], config.image_size))) for t in frames]
        )
        with torch.no_grad():
            tokens = vision_tokens(model, encoder, torch.from_numpy(views))
            out = head(tokens.float()).numpy()
        grid_h, grid_w = views.shape[1] // patch, views.shape[2] // patch
        centres = patch_centres(grid_w, grid_h)
        for row, t in enumerate(frames):
            if np.isfinite(boxes[t]).all():
                got_t.append((centres + out[row, :, 1:3]).mean(0))
                want_t.append(0.5 * (boxes[t, :2] + boxes[t, 2:]))
                prob = 1 / (1 + np.exp(-out[row, :, 0]))
                got_m.append((centres * prob[:, None]).sum(0) / max(prob.sum(), 1e-6))
                mask = prob > 0.5
                truth = box_coverage(boxes[t : t + 1], grid_w, grid_h)[0] > 0.5
                union = (mask | truth).sum()
                ious.append((mask & truth).sum() / union if union else 1.0)
            if outputs >= OUTPUTS and norm is not None:
                got_s.append(out[row, :, 5:7].mean(0) * np.array(norm[1]) + np.array(norm[0]))
                want_s.append(states[t])
            if np.isfinite(grippers[t]).all():
                got_g.append((centres + out[row, :, 3:5]).mean(0))
                want_g.append(grippers[t])
            if outputs >= head_outputs(True) and np.isfinite(containers[t]).all():
                got_c.append((centres + out[row, :, OUTPUTS : OUTPUTS + 2]).mean(0))
                want_c.append(0.5 * (containers[t, :2] + containers[t, 2:]))
    print(f"{run} step {step} ({encoder}): {len(files)} episodes of {ns.staging}, every {ns.every}th frame")
    scored = [
        ("target centre (vectors)", got_t, want_t),
        ("target centre (mask)", got_m, want_t),
        ("gripper point (vectors)", got_g, want_g),
    ]
    if want_c:
        scored.append(("container centre (vectors)", got_c, want_c))
    for name, got, want in scored:
        got, want = np.array(got) * PIXELS, np.array(want) * PIXELS
        err = np.abs(got - want).mean(0)
        base = np.abs(want - want.mean(0)).mean(0)
        print(
            f"  {name}: error x {err[0]:.1f} px, y {err[1]:.1f} px over {len(want)} frames "
            f"(always-the-mean {base[0]:.1f} / {base[1]:.1f} px)"
        )
    print(f"  target mask: mean IoU {np.mean(ious):.2f} (patches covered by more than half)")
    if got_s:
        got_s, want_s = np.array(got_s), np.array(want_s)
        err, base = np.abs(got_s - want_s).mean(0), np.abs(want_s - want_s.mean(0)).mean(0)
        print(
            f"  gripper height: error {100 * err[0]:.1f} cm (always-the-mean {100 * base[0]:.1f}); "
            f"opening: error {err[1]:.3f} (always-the-mean {base[1]:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
