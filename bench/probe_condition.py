"""Does a trained policy look at the image? Open-loop check on the first frames of staged episodes.

    python bench/probe_condition.py --checkpoint runs/pg_s2 --staging data/staging/heldout_pg [--episodes 10]

At an episode's first frame only the scene differs between episodes (same arm pose, same instruction), so
the expert's first moves differ exactly as the object's place does. For each episode the policy predicts
one chunk from the first frame with fixed noise (seed 0); the probe compares the mean end-effector step
of rows 1..K with the expert's and prints

- the spread (std over episodes) of the predicted and of the expert's x/y step: a policy that ignores the
  image predicts the same chunk for every scene (spread near 0 while the expert's is not);
- the correlation between predicted and expert x/y steps over episodes (1: follows the object);
- the mean absolute error, next to the error of always predicting the expert's mean step.

Why this exists: closed-loop evaluation costs about a minute per episode on 2 CPU cores, and a policy
that learned only the average motion fails every episode in a way a success rate cannot explain. This
probe runs in seconds and says whether the condition path carries the object's place at all.

``--approach`` also checks the end of the approach, where a policy that follows the object can still
miss it: at every frame before the hand's lowest point, within ``--window-cm`` of its height there, the
policy predicts a chunk and the probe prints the mean signed error of its summed x/y step over rows
0..K-1 against the expert's (the expert's own mean summed step beside it: an error of the same sign as
the expert's step is an overshoot). The images are the views the run was trained on, in its order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def views_of(ep, views: list[str], frame: int) -> list[np.ndarray]:
    missing = [view for view in views if view not in ep.images]
    if missing:
        raise ValueError(f"the episodes hold no {missing} images (record them: data_engine --wrist)")
    return [ep.images[view][frame] for view in views]


def first_moves(
    policy, episode_files: list[Path], rows: int, views: list[str], cfg_scale: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """[E, 2] predicted and expert mean x/y step (m) over rows 1..rows of each episode's first chunk."""
    from internvla_learning.episode import load_episode

    predicted, expert = [], []
    for path in episode_files:
        ep = load_episode(path)
        chunk = np.asarray(
            policy.predict_action(views_of(ep, views, 0), ep.instruction, cfg_scale=cfg_scale, seed=0).actions
        )
        predicted.append(chunk[1 : rows + 1, :2].mean(axis=0))
        expert.append(ep.action_ee_delta[1 : rows + 1, :2].mean(axis=0))
    return np.array(predicted), np.array(expert)


def approach_frames(state_ee: np.ndarray, window_m: float) -> list[int]:
    """Frames before the hand's lowest point that are within ``window_m`` of its height there."""
    z = state_ee[:, 2]
    lowest = int(np.argmin(z))
    return [i for i in range(lowest) if z[i] - z[lowest] < window_m]


def approach_steps(
    policy, episode_files: list[Path], rows: int, views: list[str], window_m: float, cfg_scale: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """[F, 2] predicted and expert x/y step (m) summed over rows 0..rows-1, at the approach frames."""
    from internvla_learning.episode import load_episode

    predicted, expert = [], []
    for path in episode_files:
        ep = load_episode(path)
        for i in approach_frames(ep.state_ee, window_m):
            n = min(rows, len(ep.action_ee_delta) - i)
            chunk = np.asarray(
                policy.predict_action(
                    views_of(ep, views, i), ep.instruction, cfg_scale=cfg_scale, seed=0
                ).actions
            )
            predicted.append(chunk[:n, :2].sum(axis=0))
            expert.append(ep.action_ee_delta[i : i + n, :2].sum(axis=0))
    return np.array(predicted).reshape(-1, 2), np.array(expert).reshape(-1, 2)


def report(predicted: np.ndarray, expert: np.ndarray) -> dict:
    out = {}
    for axis, name in enumerate("xy"):
        p, e = predicted[:, axis], expert[:, axis]
        corr = float(np.corrcoef(p, e)[0, 1]) if p.std() > 1e-9 and e.std() > 1e-9 else 0.0
        out[name] = {
            "predicted_std_cm": 100 * float(p.std()),
            "expert_std_cm": 100 * float(e.std()),
            "correlation": corr,
            "mae_cm": 100 * float(np.abs(p - e).mean()),
            "mean_predictor_mae_cm": 100 * float(np.abs(e - e.mean()).mean()),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="run dir or .pt")
    p.add_argument("--staging", required=True, help="data engine staging dir (episodes/*.npz)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--rows", type=int, default=5, help="rows 1..K of the first chunk are averaged")
    p.add_argument(
        "--camera", default="", help="the one view to send (default: the views the run was trained on)"
    )
    p.add_argument("--cfg-scale", type=float, default=1.5, help="guidance scale (policy_node's default 1.5)")
    p.add_argument("--approach", action="store_true", help="also check the frames at the end of the approach")
    p.add_argument(
        "--window-cm", type=float, default=5.0, help="--approach: height window above the lowest point"
    )
    ns = p.parse_args(argv)
    files = sorted(Path(ns.staging).glob("episodes/*.npz"))[: ns.episodes]
    if len(files) < 2:
        print(f"probe_condition: {ns.staging} has fewer than 2 episodes", file=sys.stderr)
        return 2
    from internvla_core.model.policy import load_policy
    from internvla_core.policy_setup import local_checkpoint_views

    views = [ns.camera] if ns.camera else local_checkpoint_views(ns.checkpoint) or ["third_person"]
    policy = load_policy(ns.checkpoint)
    try:
        predicted, expert = first_moves(policy, files, ns.rows, views, ns.cfg_scale)
    except ValueError as exc:
        print(f"probe_condition: {exc}", file=sys.stderr)
        return 2
    print(f"{ns.checkpoint}: first chunk of {len(files)} episodes of {ns.staging}, rows 1..{ns.rows}")
    for axis, r in report(predicted, expert).items():
        print(
            f"  {axis}: spread predicted {r['predicted_std_cm']:.2f} cm vs expert {r['expert_std_cm']:.2f} cm, "
            f"correlation {r['correlation']:+.2f}, error {r['mae_cm']:.2f} cm "
            f"(always-the-mean {r['mean_predictor_mae_cm']:.2f} cm)"
        )
    if ns.approach:
        predicted, expert = approach_steps(policy, files, ns.rows, views, ns.window_cm / 100, ns.cfg_scale)
        print(
            f"approach: {len(predicted)} frames within {ns.window_cm:g} cm of the lowest point, rows 0..{ns.rows - 1}"
        )
        for axis, name in enumerate("xy"):
            error = 100 * (predicted[:, axis] - expert[:, axis])
            print(
                f"  {name}: predicted - expert {error.mean():+.2f} cm (std {error.std():.2f}), "
                f"expert step {100 * expert[:, axis].mean():+.2f} cm, predicted {100 * predicted[:, axis].mean():+.2f} cm"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
