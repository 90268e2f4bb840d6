"""Export one checkpoint of a training run as a small, self-contained run directory to ship or deploy.

    python -m internvla_learning.export_model --run runs/pg_s2 --out models/my_model \
        [--step N | --average-steps N1 N2 ...] [--name NAME] [--summary "one line"] \
        [--eval eval/pg/results.csv] [--card-json extra.json]

Why: a training run holds what only training needs (every checkpoint, optimizer state, the feature cache,
the initial model): gigabytes. A robot needs one checkpoint and what loads it. The exported directory is
upstream's released run layout, which ``internvla_core.model.load_policy``, every node's ``checkpoint``
parameter and ``from_pretrained`` read unchanged:

    config.yaml, config.json, dataset_statistics.json, base_vlm/ (tokenizer and configs, no weights),
    checkpoints/steps_<N>_pytorch_model.pt, summary.jsonl ({"steps": N}),

plus the record of how it was made: ``train_args.json`` of the run (and of ``--init`` runs before it, as
``train_args.<run>.json``), ``metrics.csv`` and ``loss_curve.png``, and ``model_card.json`` (name, weights
sha256, training steps, robot, data, the stages it went through, the evaluation summary when ``--eval`` is
given). The absolute dataset path in the config is replaced by the dataset's directory name.

``--average-steps`` ships the uniform average of several checkpoints of the run instead of one (weight
averaging over the end of training, as stochastic weight averaging does): the weights of one step of a
small model trained on CPU with a cosine schedule still wander from save to save, and closed-loop
success with them (TRAINING.md, ninth round). The file is named after the last averaged step and the card
lists the steps. Checkpoints are saved with ``--condition-norm`` folded into the condition's input layer,
which is affine in its inputs, so averaging folded layers averages the layers the policy runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path

RUN_FILES = ("config.yaml", "config.json", "dataset_statistics.json")
RECORD_FILES = ("metrics.csv", "loss_curve.png")


class ExportError(ValueError):
    """The run cannot be exported (the message says why)."""


def _checkpoint_of(run: Path, step: int | None) -> tuple[int, Path]:
    found = {}
    for path in (run / "checkpoints").glob("steps_*_pytorch_model.pt"):
        match = re.fullmatch(r"steps_(\d+)_pytorch_model\.pt", path.name)
        if match:
            found[int(match.group(1))] = path
    if not found:
        raise ExportError(f"{run} has no checkpoints/steps_<N>_pytorch_model.pt: not a finished run")
    if step is None:
        step = max(found)
    if step not in found:
        raise ExportError(f"{run} has no checkpoint of step {step} (it has steps {sorted(found)})")
    return step, found[step]


def average_checkpoints(paths: list[Path]) -> dict:
    """The uniform average of the state dicts in ``paths`` (floating tensors, averaged in float64 and cast
    back; any other tensor must be equal in all, e.g. integer buffers). Keys and shapes must match."""
    import torch

    if not paths:
        raise ExportError("nothing to average")
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    keys = set(states[0])
    for path, state in zip(paths[1:], states[1:], strict=True):
        if set(state) != keys:
            raise ExportError(
                f"{path} and {paths[0]} hold different weights: {sorted(keys ^ set(state))[:5]} ..."
            )
    averaged = {}
    for key, first in states[0].items():
        tensors = [state[key] for state in states]
        if any(t.shape != first.shape for t in tensors):
            raise ExportError(
                f"{key} has different shapes in the checkpoints: {[tuple(t.shape) for t in tensors]}"
            )
        if first.is_floating_point():
            averaged[key] = (sum(t.double() for t in tensors) / len(tensors)).to(first.dtype).contiguous()
        elif all(torch.equal(t, first) for t in tensors):
            averaged[key] = first.clone()
        else:
            raise ExportError(f"{key} ({first.dtype}) differs between the checkpoints and cannot be averaged")
    return averaged


def _lineage(run: Path) -> list[tuple[Path, dict]]:
    """The run and the runs it was initialised from (``--init``), newest first."""
    from internvla_core.model.policy import run_dir_of

    chain, seen = [], set()
    current: Path | None = run
    while current is not None and current.resolve() not in seen:
        seen.add(current.resolve())
        args_file = current / "train_args.json"
        if not args_file.is_file():
            break
        args = json.loads(args_file.read_text())
        chain.append((current, args))
        init = Path(args["init"]) if args.get("init") else None
        current = run_dir_of(init) if init is not None and init.suffix == ".pt" else init
    return chain


def evaluation_summary(results_csv: Path) -> dict:
    """Success per task and overall (with Wilson 95 % bounds) from an eval_sim ``results.csv``."""
    from .evaluation import read_csv, summarise

    results = read_csv(results_csv)
    if not results:
        raise ExportError(f"{results_csv} holds no episodes")
    seeds = [r.seed for r in results]

    def block(t) -> dict:
        return {
            "successes": t.successes,
            "episodes": t.n,
            "rate": t.rate,
            "wilson95": [round(t.low, 4), round(t.high, 4)],
        }

    summaries = summarise(results)  # per task, then "all"
    return {
        "file": str(results_csv),
        "seeds": [min(seeds), max(seeds)],
        "overall": block(summaries[-1]),
        "per_task": {t.task: block(t) for t in sorted(summaries[:-1], key=lambda t: t.task)},
    }


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    step: int | None = None,
    name: str | None = None,
    summary: str = "",
    eval_csv: str | Path | None = None,
    extra: dict | None = None,
    cfg_scale: float | None = None,
    average_steps: list[int] | None = None,
    executor: dict | None = None,
) -> Path:
    """Write the exported run directory ``out``; returns the weights file. A ``README.md`` already in
    ``out`` (the model's hand-written description) is kept; everything else is replaced. ``cfg_scale``: the
    guidance scale the model was evaluated at, recorded in the card (the demo runs the model at it).
    ``average_steps``: ship the average of these checkpoints (module docstring) instead of ``step``'s.
    ``executor``: chunk_executor parameters the evaluation ran with (e.g. ``{"gripper_commit_steps": 8}``),
    recorded in the card as ``executor`` (the demo runs the model with them)."""
    import yaml

    run, out = Path(run), Path(out)
    missing = [f for f in RUN_FILES if not (run / f).is_file()]
    if missing or not (run / "base_vlm").is_dir():
        raise ExportError(f"{run} lacks {missing or ['base_vlm/']}: not a run directory of internvla-train")
    if average_steps:
        if step is not None:
            raise ExportError("give either a step or the steps to average, not both")
        if len(set(average_steps)) != len(average_steps):
            raise ExportError(f"average_steps {average_steps} repeats a step")
        averaged = [_checkpoint_of(run, s)[1] for s in sorted(average_steps)]
        step, weights = max(average_steps), averaged[-1]
    else:
        step, weights = _checkpoint_of(run, step)
    readme = (out / "README.md").read_text() if (out / "README.md").is_file() else None
    if out.exists():
        shutil.rmtree(out)
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(run / "base_vlm", out / "base_vlm")
    raw = yaml.safe_load((run / "config.yaml").read_text())
    vla = raw.get("datasets", {}).get("vla_data", {})
    data_root = vla.get("data_root_dir")
    if data_root:
        vla["data_root_dir"] = Path(data_root).name  # the machine's path means nothing elsewhere
    raw["run_id"] = name or out.name
    (out / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (out / "config.json").write_text(json.dumps(raw, indent=2))
    shutil.copy2(run / "dataset_statistics.json", out / "dataset_statistics.json")
    target = out / "checkpoints" / weights.name
    if average_steps:
        import torch

        torch.save(average_checkpoints(averaged), target)
    else:
        shutil.copy2(weights, target)
    (out / "summary.jsonl").write_text(json.dumps({"steps": step}) + "\n")
    for f in RECORD_FILES:
        if (run / f).is_file():
            shutil.copy2(run / f, out / f)
    lineage = _lineage(run)
    stages = []
    for i, (r, args) in enumerate(lineage):
        dest = "train_args.json" if i == 0 else f"train_args.{r.name}.json"
        (out / dest).write_text(json.dumps(args, indent=2))
        stages.append(
            {
                "run": r.name,
                "stage": args.get("stage"),
                "steps": args.get("steps"),
                "batch_size": args.get("batch_size"),
                "freeze_vlm": args.get("freeze_vlm"),
                "spatial_prompt": args.get("spatial_prompt"),
                "seed": args.get("seed"),
                "data": Path(args["data"]).name if args.get("data") else None,
            }
        )
    card = {
        "name": name or out.name,
        "summary": summary,
        "weights": f"checkpoints/{weights.name}",
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "training_steps": step,
        **({"averaged_steps": sorted(average_steps)} if average_steps else {}),
        "embodiment": vla.get("embodiment"),
        "unnorm_key": vla.get("unnorm_key"),
        "image_size": vla.get("image_size"),
        "stages": list(reversed(stages)),  # oldest first: stage 1, then stage 2
    }
    if cfg_scale is not None:
        card["cfg_scale"] = cfg_scale
    if executor:
        card["executor"] = dict(executor)
    if eval_csv:
        card["evaluation"] = evaluation_summary(Path(eval_csv))
    if extra:
        card.update(extra)
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    if readme is not None:
        (out / "README.md").write_text(readme)
    return target


def refresh_evaluation(
    out: str | Path, eval_csv: str | Path, cfg_scale: float | None = None, executor: dict | None = None
) -> dict:
    """Replace only the ``evaluation`` of the exported model ``out``'s card with ``eval_csv``'s (an
    evaluation rerun of the same weights, e.g. after a simulator fix); returns the new card. Every episode
    of the evaluation must have loaded the card's weights file, else ExportError. ``cfg_scale`` and
    ``executor`` (chunk_executor parameters): the settings the rerun used where they differ from the
    card's, recorded with it (the demo and the launch files run the model with them)."""
    from .evaluation import read_csv

    out = Path(out)
    card_path = out / "model_card.json"
    if not card_path.is_file():
        raise ExportError(f"{out} has no model_card.json: export the model first")
    card = json.loads(card_path.read_text())
    weights = Path(card["weights"]).name
    loaded = {Path(r.loaded_checkpoint).name for r in read_csv(eval_csv)}
    if loaded != {weights}:
        raise ExportError(
            f"{eval_csv} evaluated {sorted(loaded)}, not this model's {weights}: evaluate the exported model"
        )
    card["evaluation"] = evaluation_summary(Path(eval_csv))
    if cfg_scale is not None:
        card["cfg_scale"] = cfg_scale
    if executor:
        card["executor"] = {**(card.get("executor") or {}), **executor}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def _executor_settings(ns: argparse.Namespace) -> dict | None:
    """The chunk_executor parameters named on the command line (None: none), for the model card."""
    names = ("gripper_commit_steps", "ensemble_horizon")
    executor = {name: getattr(ns, name) for name in names if getattr(ns, name) is not None}
    return executor or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="run directory of internvla-train (not with --evaluation-only)")
    p.add_argument(
        "--out", required=True, help="directory to write (replaced if it exists, except its README.md)"
    )
    p.add_argument("--step", type=int, help="checkpoint step (default: the last)")
    p.add_argument(
        "--average-steps",
        type=int,
        nargs="+",
        help="ship the uniform average of these checkpoint steps (e.g. 12000 13000 14000 15000 16000)",
    )
    p.add_argument("--name", help="model name (default: the --out directory's name)")
    p.add_argument("--summary", default="", help="one line: what the model does")
    p.add_argument(
        "--eval", dest="eval_csv", help="results.csv of bench/eval_sim.py to summarise in the card"
    )
    p.add_argument(
        "--cfg-scale", type=float, help="the guidance scale the evaluation ran at (the demo uses it)"
    )
    p.add_argument(
        "--gripper-commit-steps",
        type=int,
        help="chunk_executor's gripper_commit_steps the evaluation ran with (the demo uses it)",
    )
    p.add_argument(
        "--ensemble-horizon",
        type=int,
        help="chunk_executor's ensemble_horizon the evaluation ran with (the demo uses it)",
    )
    p.add_argument("--card-json", help="a JSON file of extra model-card fields")
    p.add_argument(
        "--evaluation-only",
        action="store_true",
        help="only replace the evaluation in --out's model card with --eval's (a rerun of the same weights; "
        "with --cfg-scale / --gripper-commit-steps where the rerun changed them)",
    )
    ns = p.parse_args(argv)
    if ns.evaluation_only:
        if not ns.eval_csv:
            p.error("--evaluation-only needs --eval")
        try:
            card = refresh_evaluation(ns.out, ns.eval_csv, ns.cfg_scale, _executor_settings(ns))
        except ExportError as exc:
            print(f"export_model: {exc}")
            return 2
        print(f"{ns.out}/model_card.json: evaluation {card['evaluation']['overall']}")
        return 0
    if not ns.run:
        p.error("--run is required (unless --evaluation-only)")
    extra = json.loads(Path(ns.card_json).read_text()) if ns.card_json else None
    try:
        weights = export_run(
            ns.run,
            ns.out,
            step=ns.step,
            name=ns.name,
            summary=ns.summary,
            eval_csv=ns.eval_csv,
            extra=extra,
            cfg_scale=ns.cfg_scale,
            average_steps=ns.average_steps,
            executor=_executor_settings(ns),
        )
    except ExportError as exc:
        print(f"export_model: {exc}")
        return 2
    size = sum(f.stat().st_size for f in Path(ns.out).rglob("*") if f.is_file())
    print(f"exported {weights} ({size / 1e6:.1f} MB in {ns.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
