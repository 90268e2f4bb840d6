#!/usr/bin/env python3
"""Per-stage latency and peak memory of InternVLA-M1 inference (tiny and mid-size random models).

Stages (seconds from ``ActionPrediction.stages``; CUDA is synchronised at every stage end):
preprocess (resize, prompt, chat template, tokenizer, Qwen image processor), vlm (Qwen2.5-VL prefill with
all hidden states), dino (DINOv2 preprocessing + forward + projection), qformer, dit (DDIM sampling with
CFG), total. Memory: process peak RSS (ru_maxrss) and, on CUDA, torch.cuda.max_memory_allocated.

Models come from the tiny-model factory (cached), so the numbers cover the real loading/inference code;
``mid`` = text 8x512, vision 4x256, DINOv2 ViT-S/14, DiT-S, QFormer on the last hidden state.

    python bench/bench_model.py                       # tiny + mid on CPU
    python bench/bench_model.py --device cuda --configs mid --repeats 20
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src" / "internvla_core"))

from internvla_core.latency import percentile
from internvla_core.model import load_policy
from internvla_core.model.tiny import MID_SPEC, TinySpec, tiny_checkpoint

STAGES = ("preprocess", "vlm", "dino", "qformer", "dit", "total")
SPECS = {"tiny": TinySpec(), "mid": MID_SPEC}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def bench(name: str, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    ckpt = tiny_checkpoint(spec=SPECS[name])
    build_s = time.perf_counter() - t0
    dtype = {"float32": None, "bfloat16": torch.bfloat16}[args.dtype]
    t0 = time.perf_counter()
    policy = load_policy(ckpt, device=args.device, dtype=dtype)
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in policy.model.parameters())
    rng = np.random.default_rng(0)
    views = [
        rng.integers(0, 256, size=(args.height, args.width, 3), dtype=np.uint8) for _ in range(args.views)
    ]
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    for i in range(args.warmup + args.repeats):
        pred = policy.predict_action(
            views,
            "put the carrot on the plate",
            unnorm_key="oxe_bridge",
            seed=i,
            num_ddim_steps=args.ddim_steps,
        )
        if i >= args.warmup:
            for s in STAGES:
                samples[s].append(pred.stages[s])
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else float("nan")
    policy.close()
    return {
        "name": name,
        "params_m": n_params / 1e6,
        "build_s": build_s,
        "load_s": load_s,
        "median_ms": {s: 1e3 * statistics.median(v) for s, v in samples.items()},
        "p95_ms": {s: 1e3 * percentile(v, 95) for s, v in samples.items()},
        "rss_mb": _rss_mb(),
        "cuda_mb": cuda_mb,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--configs", nargs="+", choices=sorted(SPECS), default=["tiny", "mid"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--ddim-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 2
    print(
        f"device {args.device}  dtype {args.dtype}  torch threads {torch.get_num_threads()}  views {args.views} "
        f"{args.width}x{args.height}  ddim {args.ddim_steps}  cfg 1.5  repeats {args.repeats} (+{args.warmup} warmup)"
    )
    results = [bench(name, args) for name in args.configs]
    header = (
        f"{'config':<6} {'params':>8} "
        + " ".join(f"{s:>11}" for s in STAGES)
        + f" {'RSS MB':>8} {'CUDA MB':>8}"
    )
    print("\nmedian ms (p95 ms)")
    print(header)
    for r in results:
        cells = " ".join(f"{r['median_ms'][s]:>5.1f}({r['p95_ms'][s]:>4.0f})" for s in STAGES)
        print(f"{r['name']:<6} {r['params_m']:>7.1f}M {cells} {r['rss_mb']:>8.0f} {r['cuda_mb']:>8.0f}")
    for r in results:
        print(f"{r['name']}: checkpoint build/cache {r['build_s']:.1f} s, load_policy {r['load_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
