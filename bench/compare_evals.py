"""Compare evaluations of the same held-out episodes, episode by episode.

    source scripts/env.sh && python bench/compare_evals.py \\
        eval/pg_s2_dart_descent_wrist_rerun eval/pg_s2_rise_wrist [--labels seventh rise] \\
        [--out eval/compare_round9]

Each argument is an `eval_sim --out` directory (its `results.csv`, and `traces.csv` when it was run with
`--trace`). Prints, and writes to `<out>/comparison.md`, one row per run: success with its Wilson 95 %
interval, the failure kinds (`evaluation.failure_kind`, traced runs only), and against the first run the
episodes only it and only this run solve, with the exact McNemar p-value. Paired episodes (the same
seeds and the same seeded noise) tell recipes apart better than two overlapping Wilson intervals, and
the p-value says when a difference is within the spread of reruns. `<out>/comparison.png` plots the
rates with their intervals.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def load_run(directory: Path):
    """The results of one eval_sim output directory, with their traces where it has them."""
    from internvla_learning.evaluation import read_csv, read_traces

    results_csv = directory / "results.csv"
    if not results_csv.exists():
        raise SystemExit(f"{results_csv} does not exist: pass eval_sim --out directories")
    results = read_csv(results_csv)
    traces_csv = directory / "traces.csv"
    if traces_csv.exists():
        read_traces(traces_csv, results)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "runs", nargs="+", type=Path, help="eval_sim --out directories; the first is the reference"
    )
    p.add_argument("--labels", nargs="*", help="a name per run (default: the directory names)")
    p.add_argument("--out", type=Path, help="write comparison.md and comparison.png here")
    ns = p.parse_args(argv)
    labels = ns.labels or [run.name for run in ns.runs]
    if len(labels) != len(ns.runs):
        raise SystemExit(f"{len(labels)} labels for {len(ns.runs)} runs")

    from internvla_learning.evaluation import comparison_lines, plot_comparison

    runs = [(label, load_run(run)) for label, run in zip(labels, ns.runs, strict=True)]
    lines = comparison_lines(runs)
    print("\n".join(lines))
    if ns.out is not None:
        ns.out.mkdir(parents=True, exist_ok=True)
        sources = [f"- {label}: `{run}`" for label, run in zip(labels, ns.runs, strict=True)]
        (ns.out / "comparison.md").write_text("\n".join(["# Comparison", "", *sources, "", *lines, ""]))
        plot_comparison(runs, ns.out / "comparison.png")
        print(f"wrote {ns.out / 'comparison.md'} and {ns.out / 'comparison.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
