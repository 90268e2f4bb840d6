"""Can the action expert learn the task when its condition says exactly where the target is?

    source scripts/env.sh && python bench/probe_oracle.py --train data/staging/pick_green \\
        --heldout data/staging/heldout_pg [--episodes 38] [--steps 2000] [--lr 5e-4] [--features box|state]

Trains the tiny model's DiT (the `--tiny default` size: 64 wide, 2 blocks, 4 heads, horizon 16) with
upstream's diffusion loss (4 repeats, condition dropout 0.1), but its 64 condition tokens come from a small
MLP over ground truth instead of the QFormer: the target's box and grasp point (pixels / image size, from
the episodes' grounding labels) and the end-effector state (`--features box`), or the state alone
(`--features state`: the control, nothing says where the object is). Every 500 steps it predicts the
first chunk of each held-out episode (DDIM 10, CFG 1.5, fixed noise) and prints what
`bench/probe_condition.py` prints for a real policy: the spread of the predicted first x/y moves against
the expert's, their correlation and the error against always-the-mean.

Why this exists: a policy that ignores the scene can fail in the vision path (the condition does not carry
the object's place) or in the action path (the DiT cannot turn it into the right chunk). This separates
the two in minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROWS = slice(1, 6)  # rows 1..5 of the first chunk, as probe_condition


def features(ep, kind: str) -> np.ndarray:
    """[T, F] per-frame condition inputs of one episode (NaN -> 0 where the target is out of view)."""
    state = ep.state_ee.astype(np.float32)
    if kind == "state":
        return state
    g = ep.grounding
    h, w = ep.images[ep.annotation_camera].shape[1:3]
    box = np.nan_to_num(g.target_box / np.array([w, h, w, h], dtype=np.float32))
    grasp = np.nan_to_num(g.grasp_point / np.array([w, h], dtype=np.float32))
    return np.concatenate([box, grasp, state], axis=1).astype(np.float32)


def chunks(ep, horizon: int) -> np.ndarray:
    """[T, horizon, A] the chunk starting at every frame, padded with the last action (upstream)."""
    n = ep.length
    idx = np.minimum(np.arange(n)[:, None] + np.arange(horizon)[None, :], n - 1)
    return ep.action_ee_delta[idx]


class Normaliser:
    """q01/q99 of the training actions, upstream's clamp form; the gripper (last dim) binarised."""

    def __init__(self, actions: np.ndarray) -> None:
        self.q01, self.q99 = np.quantile(actions, 0.01, axis=0), np.quantile(actions, 0.99, axis=0)
        self.mask = np.arange(actions.shape[1]) < actions.shape[1] - 1

    def normalise(self, a: np.ndarray) -> np.ndarray:
        n = np.clip(2 * (a - self.q01) / (self.q99 - self.q01 + 1e-8) - 1, -1, 1)
        return np.where(self.mask, n, (a > 0.5).astype(np.float32)).astype(np.float32)

    def unnormalise(self, n: np.ndarray) -> np.ndarray:
        return np.where(self.mask, (n + 1) / 2 * (self.q99 - self.q01) + self.q01, n)


def first_move_report(predicted: np.ndarray, expert: np.ndarray) -> str:
    parts = []
    for axis, name in enumerate("xy"):
        p, e = predicted[:, axis], expert[:, axis]
        corr = float(np.corrcoef(p, e)[0, 1]) if p.std() > 1e-9 and e.std() > 1e-9 else 0.0
        parts.append(
            f"{name}: spread {100 * p.std():.2f} vs expert {100 * e.std():.2f} cm, corr {corr:+.2f}, "
            f"error {100 * np.abs(p - e).mean():.2f} cm (always-the-mean {100 * np.abs(e - e.mean()).mean():.2f})"
        )
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="data engine staging dir of the training episodes")
    p.add_argument("--heldout", required=True, help="staging dir of held-out episodes (other seeds)")
    p.add_argument("--episodes", type=int, default=None, help="use the first N training episodes")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--features", choices=("box", "state"), default="box")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from internvla_learning.episode import load_episode
    from torch import nn

    from internvla_core.model.dit import ActionModel, DiT

    torch.manual_seed(args.seed)
    train_files = sorted(Path(args.train).glob("episodes/*.npz"))[: args.episodes]
    held_files = sorted(Path(args.heldout).glob("episodes/*.npz"))
    if len(train_files) < 2 or len(held_files) < 2:
        print("probe_oracle: need at least 2 training and 2 held-out episodes", file=sys.stderr)
        return 2
    train_eps = [load_episode(f) for f in train_files]
    held_eps = [load_episode(f) for f in held_files]
    if any(ep.grounding is None for ep in train_eps + held_eps) and args.features == "box":
        print("probe_oracle: --features box needs episodes with grounding labels", file=sys.stderr)
        return 2
    horizon, dim = 16, train_eps[0].action_ee_delta.shape[1]
    norm = Normaliser(np.concatenate([ep.action_ee_delta for ep in train_eps]))
    x = torch.from_numpy(np.concatenate([features(ep, args.features) for ep in train_eps]))
    y = torch.from_numpy(np.concatenate([norm.normalise(chunks(ep, horizon)) for ep in train_eps]))
    mean, std = x.mean(0), x.std(0) + 1e-6

    class OracleCondition(nn.Module):
        """MLP(features) broadcast over the DiT's 64 condition tokens, plus a learned per-token offset."""

        def __init__(self, n_in: int, width: int = 64, tokens: int = 64) -> None:
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(n_in, 128), nn.GELU(), nn.Linear(128, width))
            self.tokens = nn.Parameter(torch.randn(tokens, width) * 0.02)

        def forward(self, f: torch.Tensor) -> torch.Tensor:
            return self.mlp((f - mean) / std)[:, None, :] + self.tokens

    net = DiT(action_dim=dim, token_size=64, depth=2, num_heads=4, horizon=horizon)
    nn.init.zeros_(net.final_layer.linear.weight)  # upstream's init of the final layer
    nn.init.zeros_(net.final_layer.linear.bias)
    expert_model, condition = ActionModel(net), OracleCondition(x.shape[1])
    params = list(expert_model.parameters()) + list(condition.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=1e-8)
    gen = torch.Generator().manual_seed(args.seed)
    held_x = torch.from_numpy(np.stack([features(ep, args.features)[0] for ep in held_eps]))
    expert_first = np.stack([ep.action_ee_delta[ROWS, :2].mean(0) for ep in held_eps])
    print(
        f"{len(train_eps)} training episodes ({len(x)} frames), {len(held_eps)} held out, "
        f"features {args.features} ({x.shape[1]})",
        flush=True,
    )
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        rows = torch.randint(0, len(x), (args.batch_size,), generator=gen)
        loss = expert_model.training_loss(
            y[rows], condition(x[rows]), repeats=4, cond_drop_prob=0.1, generator=gen
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 500 == 0 or step == args.steps:
            with torch.no_grad():
                noise = torch.randn((len(held_eps), horizon, dim), generator=torch.Generator().manual_seed(0))
                pred = expert_model.sample(condition(held_x), cfg_scale=1.5, initial_noise=noise).numpy()
            first = norm.unnormalise(pred)[:, ROWS, :2].mean(1)
            elapsed = time.perf_counter() - start
            print(f"step {step}: loss {loss.item():.4f}, {elapsed:.0f} s | {first_move_report(first, expert_first)}",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
