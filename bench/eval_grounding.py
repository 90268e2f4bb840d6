"""Grounding evaluation of a run on held-out frames of a LeRobot v3.0 dataset.

    source scripts/env.sh && python bench/eval_grounding.py --checkpoint runs/s1 --data data/heldout_v3 \\
        [--frame-stride 10] [--max-frames 200] [--kinds box point trace] [--out eval_grounding]

For every ``--frame-stride``-th frame with a labelled answer the model is asked the question training
asks (``internvla_core.grounding.grounding_prompt`` of the answer's label; the instruction for traces);
its chat answer is parsed by ``internvla_core.grounding`` and rescaled to the frame's pixels. Scores:
box IoU ≥ 0.5 accuracy (and mean IoU), point inside the labelled target box accuracy (Wilson 95 %
intervals), trace error in pixels (mean distance after resampling both traces to the same number of
points by arc length). Unparseable answers count as misses. Episodes whose seed is in the run's training
dataset (``train_args.json``'s ``data``, when it is on this machine) are skipped unless
``--allow-training-frames``: generate the held-out dataset on other seeds (the data engine's
``--seed-start``). Writes ``grounding.json`` (scores) and ``grounding.csv`` (one row per question).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="run dir or .pt")
    p.add_argument("--data", required=True, help="LeRobot v3.0 dataset with grounding labels")
    p.add_argument("--frame-stride", type=int, default=10)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--kinds", nargs="+", default=["box", "point", "trace"], choices=["box", "point", "trace"])
    p.add_argument("--allow-training-frames", action="store_true", help="also score the training episodes")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="eval_grounding")
    args = p.parse_args(argv)

    from internvla_learning.evaluation import evaluate_grounding, training_seeds

    from internvla_core.model import load_policy

    run = Path(args.checkpoint)
    run_dir = run if run.is_dir() else run.parent.parent
    exclude = None if args.allow_training_frames else training_seeds(run_dir)
    if exclude is None and not args.allow_training_frames:
        print("eval_grounding: the run's training dataset is not known here; make sure --data is held out",
              file=sys.stderr)  # fmt: skip
    policy = load_policy(args.checkpoint, device=args.device)
    start = time.perf_counter()
    scores, rows = evaluate_grounding(
        policy, args.data, frame_stride=args.frame_stride, max_frames=args.max_frames, kinds=args.kinds,
        exclude_seeds=exclude, max_new_tokens=args.max_new_tokens,
    )  # fmt: skip
    summary = scores.summary()
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["excluded_training_seeds"] = len(exclude or ())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grounding.json").write_text(json.dumps(summary, indent=2))
    with open(out / "grounding.csv", "w", newline="") as f:
        names = ["seed", "frame", "kind", "target", "iou", "inside", "error_px", "answer"]
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    b, pt = summary["box_iou50_wilson"], summary["point_in_box_wilson"]
    print(f"box IoU>=0.5: {summary['box_iou50_accuracy']:.3f} [{b[0]:.3f}, {b[1]:.3f}] (n={summary['box_n']}, "
          f"mean IoU {summary['box_mean_iou']:.3f})")  # fmt: skip
    print(
        f"point in box: {summary['point_in_box_accuracy']:.3f} [{pt[0]:.3f}, {pt[1]:.3f}] (n={summary['point_n']})"
    )
    print(
        f"trace error:  {summary['trace_error_px']:.1f} px ({summary['trace_parsed']}/{summary['trace_n']} parsed)"
    )
    print(
        f"unparsed answers: {summary['unparsed']}; {summary['seconds']} s; wrote {out}/grounding.json, .csv"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
