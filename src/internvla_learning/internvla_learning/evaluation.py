"""Evaluation statistics and reports: closed-loop success in simulation and grounding accuracy.

Pure Python and numpy (matplotlib only for the plot, torch only inside :func:`evaluate_grounding`), so the
arithmetic is unit-tested without ROS or a model. ``bench/eval_sim.py`` runs the episodes through the
node graph and hands their :class:`EpisodeResult` rows to the functions here; ``bench/eval_grounding.py``
calls :func:`evaluate_grounding`.

- Success rates come with a Wilson 95 % interval (``../shared/spec/learning.md``):
  centre = (p + z²/2n)/(1 + z²/n), half-width = z·√(p(1−p)/n + z²/4n²)/(1 + z²/n), z = 1.96.
- Evaluation seeds start at :data:`EVAL_SEED_START` (1,000,000). The data engine's seeds are below it, so
  an evaluation never replays a layout a model was trained on unless asked to (``allow_training_seeds``).
- Grounding: box IoU ≥ 0.5 accuracy, point inside the target's box accuracy, trace error in pixels
  (mean distance between the two traces after resampling both by arc length to the same number of points).
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

EVAL_SEED_START = 1_000_000
Z95 = 1.96
LIFT_M = 0.02  # a target this much higher than at the start counts as lifted in the summary


# ------------------------------------------------------------------------------------------- statistics


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``successes`` out of ``n``; (0, 1) when n is 0."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def check_seeds(seed_start: int, episodes: int, allow_training_seeds: bool = False) -> range:
    """The evaluation seeds [seed_start, seed_start + episodes); refuses the training range."""
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if seed_start < 0:
        raise ValueError(f"seeds are non-negative, got --seed-start {seed_start}")
    if seed_start < EVAL_SEED_START and not allow_training_seeds:
        raise ValueError(
            f"--seed-start {seed_start} is below {EVAL_SEED_START:,}: the data engine trains on those seeds, "
            "so the episodes could replay training layouts; pass --allow-training-seeds to do it anyway"
        )
    return range(seed_start, seed_start + episodes)


def episode_plan(tasks: Sequence[str], seeds: range) -> list[tuple[int, str, int]]:
    """(index, task, seed) per episode: tasks in turn over the seeds, so every task gets n/len(tasks)."""
    if not tasks:
        raise ValueError("no tasks to evaluate")
    return [(i, tasks[i % len(tasks)], seed) for i, seed in enumerate(seeds)]


def domain_for(worker: int, episode_number: int, workers: int, base: int = 120, limit: int = 232) -> int:
    """ROS_DOMAIN_ID of the ``episode_number``-th episode (0, 1, ...) that worker ``worker`` runs.

    Worker ``k`` only uses ids ``base + k + workers * j``: two workers never share one, so episodes that
    run at the same time never see each other; a worker's consecutive episodes cycle through its ids, so
    an episode never meets the participants a previous one may have left in discovery. Ids stay in
    [base, limit] (Fast DDS accepts 0..232; scripts/env.sh draws the interactive one from 1..100).
    """
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker {worker} of {workers}")
    per_worker = (limit - base + 1) // workers
    if per_worker < 2:
        raise ValueError(f"{workers} workers need at least {2 * workers} domain ids in [{base}, {limit}]")
    return base + worker + workers * (episode_number % per_worker)


NOISE_SEED_STRIDE = 1000  # policy_node seeds chunk k of a goal with seed + k; a goal makes fewer chunks
NOISE_SEED_LIMIT = 2_147_483_647  # policy_node's `seed` bound


def episode_noise_seed(seed: int) -> int:
    """policy_node ``seed`` for the evaluation episode on sim seed ``seed``: repeatable diffusion noise.

    Why: with random noise (seed -1) the same checkpoint succeeds on different layouts in different
    evaluations, so two evaluations differ by noise as well as by what is compared. policy_node draws chunk
    ``k``'s noise from ``seed + k``; spacing episodes ``NOISE_SEED_STRIDE`` apart keeps neighbouring
    episodes (up to that many chunks each) from sharing noise."""
    if seed < 0:
        raise ValueError(f"episode seed {seed} < 0")
    return (seed * NOISE_SEED_STRIDE) % (NOISE_SEED_LIMIT - NOISE_SEED_STRIDE)


@dataclass
class EpisodeResult:
    """One evaluation episode; ``error`` is non-empty when it could not run (it then counts as failed)."""

    index: int
    robot: str
    task: str
    seed: int
    success: bool
    sim_steps: int = 0
    policy_chunks: int = 0
    goal_result: str = ""
    wall_s: float = 0.0
    inference_p50_s: float | None = None
    instruction: str = ""
    checkpoint: str = ""  # asked for ("" = the untrained tiny factory model)
    loaded_checkpoint: str = ""  # the file policy_node actually loaded
    domain_id: int = -1
    error: str = ""
    # graded progress when the episode ends (None: not measured): a policy that fails every episode can
    # still be measured getting closer, which a 0/n success rate cannot show
    start_tcp_to_target_m: float | None = None  # gripper TCP to the target object's centre, at the start
    final_tcp_to_target_m: float | None = None  # ... and when the episode ends
    target_rise_m: float | None = None  # target's height now minus at the start (a lift shows as > 0)
    # the target's move on the table since the start, robot base frame (+y: the robot's left; a push shows
    # here), and for tasks with a container its xy distance to the container's centre when the episode ends
    target_shift_x_m: float | None = None
    target_shift_y_m: float | None = None
    target_to_container_m: float | None = None
    latency: dict[str, list[float]] = field(default_factory=dict)  # stage -> seconds per chunk (not in CSV)
    # (sim step, TCP - target x, y, z [m] in the robot base frame[, commanded gripper opening 0..1, measured
    # finger opening 0..1]) as the episode ran; eval_sim --trace (not in results.csv: write_traces writes
    # traces.csv)
    trace: list[tuple[float, ...]] = field(default_factory=list)


NOT_IN_CSV = ("latency", "trace")
CSV_FIELDS = [f.name for f in fields(EpisodeResult) if f.name not in NOT_IN_CSV]


@dataclass
class TaskSummary:
    task: str
    n: int
    successes: int
    rate: float
    low: float
    high: float
    mean_steps: float
    errors: int
    median_start_tcp_to_target_m: float | None = None  # over the episodes that measured it
    median_tcp_to_target_m: float | None = None  # at the end, over the episodes that measured it
    lifted: int = 0  # episodes whose target ended at least LIFT_M above its start


def summarise(results: Sequence[EpisodeResult]) -> list[TaskSummary]:
    """Per task (in first-seen order), then ``all``: success, Wilson interval, mean episode length."""
    groups: dict[str, list[EpisodeResult]] = {}
    for r in results:
        groups.setdefault(r.task, []).append(r)
    out = []
    for task, rows in [*groups.items(), ("all", list(results))]:
        n = len(rows)
        ok = sum(bool(r.success) for r in rows)
        low, high = wilson(ok, n)
        distances = [r.final_tcp_to_target_m for r in rows if r.final_tcp_to_target_m is not None]
        starts = [r.start_tcp_to_target_m for r in rows if r.start_tcp_to_target_m is not None]
        out.append(
            TaskSummary(
                task=task,
                n=n,
                successes=ok,
                rate=ok / n if n else 0.0,
                low=low,
                high=high,
                mean_steps=float(np.mean([r.sim_steps for r in rows])) if rows else 0.0,
                errors=sum(bool(r.error) for r in rows),
                median_start_tcp_to_target_m=float(np.median(starts)) if starts else None,
                median_tcp_to_target_m=float(np.median(distances)) if distances else None,
                lifted=sum(r.target_rise_m is not None and r.target_rise_m >= LIFT_M for r in rows),
            )
        )
    return out


def latency_percentiles(results: Iterable[EpisodeResult]) -> dict[str, dict[str, float]]:
    """Per stage over every chunk of every episode: count, p50, p95 [s]."""
    pooled: dict[str, list[float]] = {}
    for r in results:
        for stage, values in r.latency.items():
            pooled.setdefault(stage, []).extend(values)
    return {
        stage: {
            "count": len(v),
            "p50": float(np.percentile(v, 50)) if v else float("nan"),
            "p95": float(np.percentile(v, 95)) if v else float("nan"),
        }
        for stage, v in pooled.items()
    }


def report_lines(results: Sequence[EpisodeResult]) -> list[str]:
    """The printed report; its last line is exactly ``success: <rate>`` (overall, 3 decimals)."""
    summaries = summarise(results)
    lines = [
        f"{'task':16s} {'success':>9s}  {'rate':>5s}  {'Wilson 95 %':>15s}  {'mean steps':>10s}  "
        f"{'TCP-target [cm]':>15s}  {'lifted':>7s}"
    ]
    for s in summaries:
        err = f"  ({s.errors} did not run)" if s.errors else ""
        distance = f"{_cm(s.median_start_tcp_to_target_m)}->{_cm(s.median_tcp_to_target_m)}"
        lines.append(
            f"{s.task:16s} {s.successes:4d}/{s.n:<4d}  {s.rate:5.3f}  [{s.low:.3f}, {s.high:.3f}]  "
            f"{s.mean_steps:10.1f}  {distance:>15s}  {f'{s.lifted}/{s.n}':>7s}{err}"
        )
    lengths = [r.sim_steps for r in results]
    if lengths:
        lines.append(
            f"episode length [sim steps]: mean {np.mean(lengths):.1f}, min {min(lengths)}, max {max(lengths)}; "
            f"wall per episode: mean {np.mean([r.wall_s for r in results]):.2f} s"
        )
    latency = latency_percentiles(results)
    if latency:
        lines.append("latency per stage [ms] (p50 / p95 over chunks):")
        for stage, v in latency.items():
            lines.append(f"  {stage:22s} {1e3 * v['p50']:9.1f} / {1e3 * v['p95']:9.1f}   n={v['count']}")
    overall = summaries[-1]
    lines.append(f"success: {overall.rate:.3f}")
    return lines


def write_csv(results: Sequence[EpisodeResult], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in results:
            row = asdict(r)
            for name in NOT_IN_CSV:
                row.pop(name)
            writer.writerow(row)
    return path


def read_csv(path: str | Path) -> list[EpisodeResult]:
    """Rows written by :func:`write_csv` (for re-plotting or merging runs)."""
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.append(
                EpisodeResult(
                    index=int(row["index"]),
                    robot=row["robot"],
                    task=row["task"],
                    seed=int(row["seed"]),
                    success=row["success"] == "True",
                    sim_steps=int(row["sim_steps"]),
                    policy_chunks=int(row["policy_chunks"]),
                    goal_result=row["goal_result"],
                    wall_s=float(row["wall_s"]),
                    inference_p50_s=float(row["inference_p50_s"]) if row["inference_p50_s"] else None,
                    instruction=row["instruction"],
                    checkpoint=row["checkpoint"],
                    loaded_checkpoint=row["loaded_checkpoint"],
                    domain_id=int(row["domain_id"]),
                    error=row["error"],
                    start_tcp_to_target_m=_optional_float(row.get("start_tcp_to_target_m")),
                    final_tcp_to_target_m=_optional_float(row.get("final_tcp_to_target_m")),
                    target_rise_m=_optional_float(row.get("target_rise_m")),
                    target_shift_x_m=_optional_float(row.get("target_shift_x_m")),
                    target_shift_y_m=_optional_float(row.get("target_shift_y_m")),
                    target_to_container_m=_optional_float(row.get("target_to_container_m")),
                )
            )
    return out


def _optional_float(text: str | None) -> float | None:
    """A CSV cell that may be empty (not measured) or absent (a file written before the column existed)."""
    return float(text) if text else None


def _cm(metres: float | None) -> str:
    return "n/a" if metres is None else f"{100 * metres:.1f}"


def table_progress_lines(results: Sequence[EpisodeResult]) -> list[str]:
    """Markdown: per task, where the target went on the table (median xy move since the start, robot base
    frame, +y the robot's left) and, for tasks with a container, its median distance to the container at
    the end, over successes and failures apart: what a failed push or place still got done. Empty for
    results without these measurements (files written before them)."""
    groups: dict[str, list[EpisodeResult]] = {}
    for r in results:
        if r.target_shift_x_m is not None and r.target_shift_y_m is not None:
            groups.setdefault(r.task, []).append(r)
    if not groups:
        return []
    lines = ["", "| task | episodes | median target move x / y [cm] | median target-container at the end [cm] |",
             "| --- | --- | ---: | ---: |"]  # fmt: skip
    for task, rows in groups.items():
        for name, part in (
            ("succeeded", [r for r in rows if r.success]),
            ("failed", [r for r in rows if not r.success]),
        ):
            if not part:
                continue
            dx = float(np.median([r.target_shift_x_m for r in part]))
            dy = float(np.median([r.target_shift_y_m for r in part]))
            gaps = [r.target_to_container_m for r in part if r.target_to_container_m is not None]
            gap = _cm(float(np.median(gaps))) if gaps else "-"
            lines.append(f"| {task} | {name} ({len(part)}) | {100 * dx:+.1f} / {100 * dy:+.1f} | {gap} |")
    return lines


def _graded(s: TaskSummary) -> str:
    return f"{_cm(s.median_start_tcp_to_target_m)} → {_cm(s.median_tcp_to_target_m)} | {s.lifted}/{s.n}"


ARRIVAL_HEIGHT_M = 0.02  # "arrived": the TCP is first less than this above the target's centre
ARRIVAL_BINS_M = (-0.005, 0.0, 0.005, 0.01, 0.015, 0.02)  # edges of the x-offset bins of arrival_lines


def arrival_offsets(
    results: Sequence[EpisodeResult], below: float = ARRIVAL_HEIGHT_M
) -> list[tuple[bool, float, float]]:
    """(success, dx, dy) [m] of TCP - target at the first traced step where the TCP is less than ``below``
    above the target's centre, for each traced episode that got that low. Where the hand comes down decides
    a grasp (TRAINING.md, sixth round: success falls from 0.65 to 0 as x goes from -0.5 to +1.5 cm)."""
    out = []
    for r in results:
        for _, dx, dy, dz, *_ in r.trace:
            if dz < below:
                out.append((bool(r.success), float(dx), float(dy)))
                break
    return out


# trace columns after (step, dx, dy, dz) where eval_sim recorded them: the commanded gripper opening, the
# measured finger opening, the target's height above its start [m] (since the fourteenth round)
GRIPPER_CMD, FINGER_OPENING, TARGET_RISE = 4, 5, 6


def _has_column(result: EpisodeResult, column: int) -> bool:
    return bool(result.trace) and len(result.trace[0]) > column


def _first_close(result: EpisodeResult) -> int | None:
    """Index of the first traced step with the gripper commanded closed (< 0.5); None: it never closed."""
    return next((i for i, sample in enumerate(result.trace) if sample[GRIPPER_CMD] < 0.5), None)


def gripper_reopenings(result: EpisodeResult) -> int | None:
    """How often the commanded gripper went from closed (< 0.5) back to open in a traced episode (None: the
    trace has no gripper column). A policy that closes on the block and then reopens instead of lifting
    fails with its hand at the block (TRAINING.md, seventh round)."""
    if not _has_column(result, GRIPPER_CMD):
        return None
    count, closed = 0, False
    for sample in result.trace:
        now_closed = sample[GRIPPER_CMD] < 0.5
        count += int(closed and not now_closed)
        closed = now_closed
    return count


def reopening_lines(results: Sequence[EpisodeResult]) -> list[str]:
    """Markdown: the traced episodes whose gripper reopened after closing, among successes and failures."""
    counted = [(r.success, gripper_reopenings(r)) for r in results]
    counted = [(ok, n) for ok, n in counted if n is not None]
    if not counted:
        return []
    fails = [n for ok, n in counted if not ok]
    wins = [n for ok, n in counted if ok]
    return [
        "",
        f"Gripper reopened after closing (commanded opening back to >= 0.5): {sum(n > 0 for n in fails)} of "
        f"{len(fails)} failed and {sum(n > 0 for n in wins)} of {len(wins)} successful traced episodes.",
    ]


FAILURE_KINDS = ("never closed", "closed, never rose", "rose without the target")
ROSE_M = 0.01  # the TCP rose this much relative to the target after the first close


def failure_kind(result: EpisodeResult) -> str | None:
    """What a failed traced episode did at the grasp (None: a success, or no gripper column in the trace).

    ``never closed``: the commanded gripper never closed; ``closed, never rose``: it closed and the TCP never
    rose ``ROSE_M`` above its height at that first close, relative to the target (a hand stuck at the
    block: the hold a policy without memory cannot leave, TRAINING.md eighth round); ``rose without the
    target``: it rose that much relative to the target, so the target stayed behind (a grasp that did not
    hold, or a lift before the fingers held). A target carried away in the hand rises with the TCP, so a
    failed carry counts as ``closed, never rose``: for a task with a container, :func:`placement_kind` tells
    those apart.
    """
    if result.success or not _has_column(result, GRIPPER_CMD):
        return None
    close = _first_close(result)
    if close is None:
        return FAILURE_KINDS[0]
    z0 = result.trace[close][3]
    rose = any(sample[3] > z0 + ROSE_M for sample in result.trace[close:])
    return FAILURE_KINDS[2] if rose else FAILURE_KINDS[1]


SETTLED_STEPS = 3  # the Franka's fingers stop on a block within 2 control steps of the close command


def opening_after_close(result: EpisodeResult, steps: int = SETTLED_STEPS) -> float | None:
    """The measured finger opening ``steps`` traced steps after the first close (None: no finger column,
    no close, or the trace ends first). On the object it is the object's width (0.49 for a 4 cm block in
    the Franka's 8 cm), on nothing it is low (0.0; 0.14 in evaluations before the eleventh round): whether the first close caught the target."""
    if not _has_column(result, FINGER_OPENING):
        return None
    close = _first_close(result)
    if close is None or close + steps >= len(result.trace):
        return None
    return float(result.trace[close + steps][FINGER_OPENING])


PLACEMENT_KINDS = ("never lifted the target", "still held at the end", "set down off the container")


def placement_kind(result: EpisodeResult) -> str | None:
    """What a failed traced episode of a task with a container (red_on_plate's plate) did with the target,
    from the target's traced height above its start (None: a success, a task without a container, or a
    trace without that column). ``never lifted the target``: it never rose ``LIFT_M``; ``still held at
    the end``: it was still that high when the episode ended (carried, never put down); ``set down off
    the container``: it was lifted and is down again, but not where the task wants it (dropped on the way
    or put down beside the plate). The report gives their distances to the container."""
    if result.success or result.target_to_container_m is None or not _has_column(result, TARGET_RISE):
        return None
    rises = [sample[TARGET_RISE] for sample in result.trace]
    if max(rises) < LIFT_M:
        return PLACEMENT_KINDS[0]
    return PLACEMENT_KINDS[1] if rises[-1] >= LIFT_M else PLACEMENT_KINDS[2]


def placement_lines(results: Sequence[EpisodeResult]) -> list[str]:
    """Markdown: the failed traced episodes of tasks with a container by :func:`placement_kind`, with the
    median xy distance from the target to the container's centre when they ended."""
    kinds = [placement_kind(r) for r in results]
    if not any(kinds):
        return []
    lines = ["", "| failed place (traced) | episodes | target to container at the end, median [cm] |",
             "| --- | ---: | ---: |"]  # fmt: skip
    for kind in PLACEMENT_KINDS:
        gaps = [r.target_to_container_m for r, k in zip(results, kinds, strict=True) if k == kind]
        lines.append(f"| {kind} | {len(gaps)} | {_cm(float(np.median(gaps))) if gaps else '-'} |")
    return lines


def failure_lines(results: Sequence[EpisodeResult]) -> list[str]:
    """Markdown: the failed traced episodes by what they did at the grasp (:func:`failure_kind`), with the
    median finger opening after their first close where the trace has it (successes for comparison)."""
    kinds = [failure_kind(r) for r in results]
    if not any(kinds):
        return []
    openings = [opening_after_close(r) for r in results]
    with_fingers = any(o is not None for o in openings)

    def row(label: str, members: list[int]) -> str:
        text = f"| {label} | {len(members)} |"
        if with_fingers:
            values = [openings[i] for i in members if openings[i] is not None]
            text += f" {np.median(values):.2f} |" if values else " - |"
        return text

    head = "| failure (traced) | episodes |"
    rule = "| --- | ---: |"
    if with_fingers:
        head += f" finger opening {SETTLED_STEPS} steps after the first close (median) |"
        rule += " ---: |"
    lines = ["", head, rule]
    lines += [row(kind, [i for i, k in enumerate(kinds) if k == kind]) for kind in FAILURE_KINDS]
    if with_fingers:
        lines.append(row("(successes)", [i for i, r in enumerate(results) if r.success and r.trace]))
    return lines


def read_traces(path: str | Path, results: Sequence[EpisodeResult]) -> list[EpisodeResult]:
    """Attach the rows of a ``traces.csv`` (:func:`write_traces`) to the ``results`` of the same run, by
    (task, seed): :func:`failure_kind` and the other trace statistics then work on a run read back from
    disk. A trace whose episode is not in ``results`` is an error (a mixed-up directory)."""
    by_key = {(r.task, r.seed): r for r in results}
    traces: dict[tuple[str, int], list[tuple[float, ...]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["task"], int(row["seed"]))
            if key not in by_key:
                raise ValueError(f"{path}: a trace of {key[0]} seed {key[1]}, which is not in the results")
            sample = [float(row[name]) for name in ("step", "dx_m", "dy_m", "dz_m")]
            for name in OPTIONAL_TRACE_FIELDS:  # positional: the first empty one ends the sample
                if not row.get(name):
                    break
                sample.append(float(row[name]))
            traces.setdefault(key, []).append(tuple(sample))
    for key, trace in traces.items():
        by_key[key].trace = trace
    return list(results)


@dataclass(frozen=True)
class PairedComparison:
    """Two evaluations of the same (task, seed) episodes, episode by episode."""

    n: int  # episodes in both runs
    both: int  # solved by both
    only_a: int  # solved by the first run only
    only_b: int  # solved by the second run only
    neither: int
    p_value: float  # exact two-sided McNemar test: could only_a vs only_b be chance?


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under "the two runs are equally good" each discordant episode goes
    either way with probability 1/2, so min(only_a, only_b) is Binomial(only_a + only_b, 1/2). Paired
    episodes (the same seeds, the same noise) make this much sharper than comparing two Wilson intervals;
    an evaluation rerun of one model still differs in some episodes (TRAINING.md: 23 of 200), which this
    test counts as chance, as it should."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def paired_comparison(a: Sequence[EpisodeResult], b: Sequence[EpisodeResult]) -> PairedComparison:
    """Compare two runs on the episodes (task, seed) both ran; an error when they share none."""
    first = {(r.task, r.seed): r.success for r in a}
    second = {(r.task, r.seed): r.success for r in b}
    shared = sorted(first.keys() & second.keys())
    if not shared:
        raise ValueError("the two evaluations share no (task, seed) episode: run them on the same seeds")
    both = sum(first[k] and second[k] for k in shared)
    only_a = sum(first[k] and not second[k] for k in shared)
    only_b = sum(second[k] and not first[k] for k in shared)
    return PairedComparison(
        len(shared),
        both,
        only_a,
        only_b,
        len(shared) - both - only_a - only_b,
        mcnemar_exact_p(only_a, only_b),
    )


def comparison_lines(runs: Sequence[tuple[str, Sequence[EpisodeResult]]]) -> list[str]:
    """Markdown: one row per (label, results): success with its Wilson interval, the failure kinds where
    traced, and the paired comparison with the first run (episodes only it / only this one solves, and
    the McNemar p-value)."""
    if not runs:
        raise ValueError("nothing to compare")
    reference = runs[0][1]
    lines = [
        "| run | success | Wilson 95 % | never closed | closed, never rose | rose without the target "
        f"| vs {runs[0][0]}: only it / only this | McNemar p |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for label, results in runs:
        total = summarise(results)[-1]  # the "all" row: the run's success and Wilson interval
        kinds = [failure_kind(r) for r in results]
        counts = [str(kinds.count(k)) if any(kinds) else "-" for k in FAILURE_KINDS]
        if results is reference:
            paired = "- | -"
        else:
            c = paired_comparison(reference, results)
            paired = f"{c.only_a} / {c.only_b} (of {c.n}) | {c.p_value:.3f}"
        lines.append(
            f"| {label} | {total.successes}/{total.n} ({100 * total.rate:.1f} %) "
            f"| [{total.low:.3f}, {total.high:.3f}] | {' | '.join(counts)} | {paired} |"
        )
    return lines


def plot_comparison(runs: Sequence[tuple[str, Sequence[EpisodeResult]]], path: str | Path) -> Path:
    """One bar per run: its success rate with the Wilson 95 % interval as the error bar."""
    totals = [summarise(results)[-1] for _, results in runs]
    labels = [label for label, _ in runs]
    return _wilson_bars(totals, labels, ["tab:blue"] * len(runs), path, (1.5 * len(runs) + 2.5, 3.8), 20)


def _bin_label(low: float, high: float, spec: str) -> str:
    """A table row's name for the bin [low, high) of metres, in cm formatted with ``spec`` (open ends as
    "< high" and ">= low")."""
    if low == -np.inf:
        return f"< {100 * high:{spec}}"
    if high == np.inf:
        return f">= {100 * low:{spec}}"
    return f"{100 * low:{spec}} to {100 * high:{spec}}"


def arrival_lines(results: Sequence[EpisodeResult], below: float = ARRIVAL_HEIGHT_M) -> list[str]:
    """Markdown: how many traced episodes arrived, their x / y offset, and success per x-offset bin."""
    arrivals = arrival_offsets(results, below)
    if not arrivals:
        return []
    a = np.array([(ok, dx, dy) for ok, dx, dy in arrivals], dtype=float)
    traced = sum(1 for r in results if r.trace)
    lines = [
        "",
        f"Arrival (first step with the TCP < {100 * below:.0f} cm above the target): {len(a)} of {traced} "
        f"traced episodes; TCP - target x {100 * np.median(a[:, 1]):+.2f} cm median "
        f"({100 * np.mean(a[:, 1]):+.2f} ± {100 * np.std(a[:, 1]):.2f}), y {100 * np.median(a[:, 2]):+.2f} cm.",
        "",
        "| dx [cm] | episodes | success |",
        "| --- | ---: | ---: |",
    ]
    edges = [-np.inf, *ARRIVAL_BINS_M, np.inf]
    for low, high in itertools.pairwise(edges):
        inside = a[(a[:, 1] >= low) & (a[:, 1] < high)]
        name = _bin_label(low, high, "+.1f")
        rate = f"{inside[:, 0].mean():.2f}" if len(inside) else "-"
        lines.append(f"| {name} | {len(inside)} | {rate} |")
    return lines


STALL_MOTION_M = 0.003  # the hand moves less than this per traced step, relative to the target ...
STALL_STEPS = 15  # ... for at least this many steps in a row: it stopped (1.5 s at the Franka's 10 Hz)
STALL_HEIGHTS_M = (0.02, 0.08, 0.18)  # bins of the TCP's height above the target where it stopped


def longest_stall(result: EpisodeResult) -> tuple[int, float] | None:
    """(steps, dz [m]) of the longest run of traced steps in which the TCP moved less than
    ``STALL_MOTION_M`` per step relative to the target, and its height above the target at the run's end;
    None without a trace. A policy re-queried at every step that keeps predicting no motion at one picture
    stays there for good (TRAINING.md, thirteenth round: the push stopped at the expert's waypoints).
    Relative motion: a hand that carries the target along also counts as still, so read it for failures."""
    if len(result.trace) < 2:
        return None
    xyz = np.array([sample[1:4] for sample in result.trace], dtype=float)
    still = np.linalg.norm(np.diff(xyz, axis=0), axis=1) < STALL_MOTION_M
    best, best_end, run = 0, 0, 0
    for i, is_still in enumerate(still):
        run = run + 1 if is_still else 0
        if run > best:
            best, best_end = run, i + 1
    return best, float(xyz[best_end, 2])


def stall_lines(results: Sequence[EpisodeResult]) -> list[str]:
    """Markdown: the failed traced episodes whose hand stopped for ``STALL_STEPS`` or more, by the height
    above the target where it stopped (:func:`longest_stall`)."""
    stalls = [longest_stall(r) for r in results if not r.success]
    stalls = [s for s in stalls if s is not None]
    if not stalls:
        return []
    stopped = [(steps, dz) for steps, dz in stalls if steps >= STALL_STEPS]
    lines = [
        "",
        f"Stopped (the TCP moved < {1000 * STALL_MOTION_M:.0f} mm per step relative to the target for "
        f">= {STALL_STEPS} steps in a row): {len(stopped)} of {len(stalls)} failed traced episodes"
        + (f", for {np.median([s for s, _ in stopped]):.0f} steps (median)." if stopped else "."),
    ]
    if stopped:
        lines += ["", "| where it stopped: TCP above the target [cm] | failed episodes |", "| --- | ---: |"]
        edges = [-np.inf, *STALL_HEIGHTS_M, np.inf]
        for low, high in itertools.pairwise(edges):
            n = sum(1 for _, dz in stopped if low <= dz < high)
            lines.append(f"| {_bin_label(low, high, '.0f')} | {n} |")
    return lines


def write_markdown(results: Sequence[EpisodeResult], path: str | Path, title: str = "Evaluation") -> Path:
    path = Path(path)
    lines = [f"# {title}", "",
             "| task | successes | rate | Wilson 95 % | mean steps | did not run | median TCP-target start → end [cm] | lifted |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for s in summarise(results):
        lines.append(
            f"| {s.task} | {s.successes}/{s.n} | {s.rate:.3f} | [{s.low:.3f}, {s.high:.3f}] | "
            f"{s.mean_steps:.1f} | {s.errors} | {_graded(s)} |"
        )
    latency = latency_percentiles(results)
    if latency:
        lines += ["", "| stage | p50 [ms] | p95 [ms] | chunks |", "| --- | ---: | ---: | ---: |"]
        for stage, v in latency.items():
            lines.append(f"| {stage} | {1e3 * v['p50']:.1f} | {1e3 * v['p95']:.1f} | {v['count']} |")
    lines += table_progress_lines(results)
    lines += arrival_lines(results)
    lines += reopening_lines(results)
    lines += failure_lines(results)
    lines += placement_lines(results)
    lines += stall_lines(results)
    seeds = sorted(r.seed for r in results)
    if seeds:
        lines += ["", f"Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)} episodes)."]
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_success(results: Sequence[EpisodeResult], path: str | Path) -> Path:
    """Bar per task (and overall) with its Wilson 95 % interval as the error bar."""
    summaries = summarise(results)
    labels = [f"{s.task}\n(n={s.n})" for s in summaries]
    colours = ["tab:blue"] * (len(summaries) - 1) + ["tab:grey"]
    return _wilson_bars(summaries, labels, colours, path, (1.6 * len(summaries) + 2, 3.5), 0)


def _wilson_bars(
    summaries: Sequence[TaskSummary],
    labels: Sequence[str],
    colours: Sequence[str],
    path: str | Path,
    size: tuple[float, float],
    label_rotation: float,
) -> Path:
    """The bar chart both success plots draw: one bar per summary, its Wilson interval as the error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(summaries))
    rates = np.array([s.rate for s in summaries])
    errors = np.array([[s.rate - s.low for s in summaries], [s.high - s.rate for s in summaries]])
    fig, ax = plt.subplots(figsize=size)
    ax.bar(x, rates, color=list(colours), yerr=np.clip(errors, 0, None), capsize=6)
    ax.set_xticks(x, labels, rotation=label_rotation, ha="right" if label_rotation else "center")
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate (Wilson 95 %)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# traces.csv's optional columns (the trace's columns GRIPPER_CMD, FINGER_OPENING and TARGET_RISE) and how
# each is written; an older trace lacks the last ones and leaves them empty
OPTIONAL_TRACE_FIELDS = {"gripper_cmd": ".3f", "finger_opening": ".3f", "target_rise_m": ".5f"}
TRACE_FIELDS = ["seed", "task", "success", "step", "dx_m", "dy_m", "dz_m", *OPTIONAL_TRACE_FIELDS]


def write_traces(results: Sequence[EpisodeResult], path: str | Path) -> Path:
    """One row per traced step: seed, task, success, sim step, TCP minus target (x, y, z) [m], commanded
    gripper opening, measured finger opening and the target's rise since the start [m] (empty where the
    trace has none)."""
    path = Path(path)
    formats = list(OPTIONAL_TRACE_FIELDS.values())
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TRACE_FIELDS)
        for r in results:
            for step, dx, dy, dz, *extra in r.trace:
                values = [format(v, spec) for v, spec in zip(extra, formats, strict=False)]
                optional = values + [""] * (len(formats) - len(values))
                writer.writerow(
                    [r.seed, r.task, r.success, step, f"{dx:.5f}", f"{dy:.5f}", f"{dz:.5f}", *optional]
                )
    return path


def plot_traces(results: Sequence[EpisodeResult], path: str | Path) -> Path:
    """Per episode, the TCP's horizontal and vertical distance to the target over the sim steps: where a
    failing policy stops short (sideways or above the target), and when."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (side, height) = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for r in results:
        if not r.trace:
            continue
        t = np.array(r.trace, dtype=float)
        style = dict(color="tab:green" if r.success else "tab:red", alpha=0.6, lw=1)
        side.plot(t[:, 0], 100 * np.hypot(t[:, 1], t[:, 2]), **style)
        height.plot(t[:, 0], 100 * t[:, 3], **style)
    side.set(xlabel="sim step", ylabel="TCP to target, horizontal [cm]", ylim=(0, None))
    height.set(xlabel="sim step", ylabel="TCP above target [cm]")
    height.axhline(0, color="grey", lw=0.8)
    fig.suptitle("green: success, red: failure")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_reports(results: Sequence[EpisodeResult], out: str | Path, title: str = "Evaluation") -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "csv": write_csv(results, out / "results.csv"),
        "md": write_markdown(results, out / "results.md", title),
        "plot": plot_success(results, out / "success.png"),
        **(
            {
                "traces": write_traces(results, out / "traces.csv"),
                "trace_plot": plot_traces(results, out / "traces.png"),
            }
            if any(r.trace for r in results)
            else {}
        ),
    }


# -------------------------------------------------------------------------------------------- grounding


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes (corners in any order); 0 for empty boxes."""
    ax1, ax2 = sorted((a[0], a[2]))
    ay1, ay2 = sorted((a[1], a[3]))
    bx1, bx2 = sorted((b[0], b[2]))
    by1, by2 = sorted((b[1], b[3]))
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return float(inter / union) if union > 0 else 0.0


def point_in_box(point: Sequence[float], box: Sequence[float]) -> bool:
    """Whether (x, y) lies inside [x1, y1, x2, y2], edges included."""
    x1, x2 = sorted((box[0], box[2]))
    y1, y2 = sorted((box[1], box[3]))
    return bool(x1 <= point[0] <= x2 and y1 <= point[1] <= y2)


def resample_polyline(points: Sequence[Sequence[float]], n: int) -> np.ndarray:
    """``n`` points equally spaced by arc length along the polyline (one point: repeated)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("empty trace")
    if n < 1:
        raise ValueError("n must be at least 1")
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] == 0:
        return np.repeat(pts[:1], n, axis=0)
    s = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(s, arc, pts[:, 0]), np.interp(s, arc, pts[:, 1])], axis=1)


def trace_error(
    pred: Sequence[Sequence[float]], truth: Sequence[Sequence[float]], n: int | None = None
) -> float:
    """Mean pixel distance between the traces after resampling both to ``n`` points (default: the longer
    trace's point count)."""
    n = n or max(len(pred), len(truth))
    a, b = resample_polyline(pred, n), resample_polyline(truth, n)
    return float(np.mean(np.linalg.norm(a - b, axis=1)))


@dataclass
class GroundingScores:
    """Accumulated grounding metrics; an unparseable answer counts as a miss (box, point) and is counted
    apart for traces (no distance exists)."""

    box_n: int = 0
    box_hits: int = 0  # IoU >= 0.5
    box_iou_sum: float = 0.0
    point_n: int = 0
    point_hits: int = 0  # inside the target's box
    trace_n: int = 0
    trace_parsed: int = 0
    trace_error_sum: float = 0.0
    unparsed: dict[str, int] = field(default_factory=lambda: {"box": 0, "point": 0, "trace": 0})

    def add_box(self, pred: Sequence[float] | None, truth: Sequence[float]) -> float:
        self.box_n += 1
        if pred is None:
            self.unparsed["box"] += 1
            return 0.0
        iou = box_iou(pred, truth)
        self.box_iou_sum += iou
        self.box_hits += iou >= 0.5
        return iou

    def add_point(self, pred: Sequence[float] | None, truth_box: Sequence[float]) -> bool:
        self.point_n += 1
        if pred is None:
            self.unparsed["point"] += 1
            return False
        hit = point_in_box(pred, truth_box)
        self.point_hits += hit
        return hit

    def add_trace(
        self, pred: Sequence[Sequence[float]] | None, truth: Sequence[Sequence[float]]
    ) -> float | None:
        self.trace_n += 1
        if not pred:
            self.unparsed["trace"] += 1
            return None
        err = trace_error(pred, truth)
        self.trace_parsed += 1
        self.trace_error_sum += err
        return err

    def summary(self) -> dict:
        def rate(k, n):
            return k / n if n else float("nan")

        box_low, box_high = wilson(self.box_hits, self.box_n)
        pt_low, pt_high = wilson(self.point_hits, self.point_n)
        return {
            "box_n": self.box_n,
            "box_iou50_accuracy": rate(self.box_hits, self.box_n),
            "box_iou50_wilson": [box_low, box_high],
            "box_mean_iou": rate(self.box_iou_sum, self.box_n),
            "point_n": self.point_n,
            "point_in_box_accuracy": rate(self.point_hits, self.point_n),
            "point_in_box_wilson": [pt_low, pt_high],
            "trace_n": self.trace_n,
            "trace_parsed": self.trace_parsed,
            "trace_error_px": rate(self.trace_error_sum, self.trace_parsed),
            "unparsed": dict(self.unparsed),
        }


def _first_geometry(text: str, kind: str):
    """(label, value) of the first box / point / trace of an answer in its own pixels, or None."""
    from internvla_core.grounding import parse_grounding_text

    parsed = parse_grounding_text(text or "", kind)
    items = {"box": parsed.boxes, "point": parsed.points, "trace": parsed.traces}[kind]
    return items[0] if items else None


def training_seeds(run_dir: str | Path) -> set[int] | None:
    """The episode seeds of the dataset a run was trained on (its ``train_args.json`` ``data``), or None
    when the run does not say or that dataset is not on this machine."""
    import json

    args_path = Path(run_dir) / "train_args.json"
    if not args_path.is_file():
        return None
    data = json.loads(args_path.read_text()).get("data")
    if not data:
        return None
    # a relative path was relative to where training ran: try as given, then beside the run dir
    candidates = [Path(data)] if Path(data).is_absolute() else [Path(data), Path(run_dir).parent / data]
    data = next((c for c in candidates if (c / "meta" / "info.json").is_file()), None)
    if data is None:
        return None
    from .lerobot_read import LeRobotV3Reader

    return {int(m.get("internvla/seed", m["episode_index"])) for m in LeRobotV3Reader(data).episodes}


def evaluate_grounding(
    policy,
    dataset: str | Path,
    *,
    frame_stride: int = 10,
    max_frames: int | None = None,
    kinds: Sequence[str] = ("box", "point", "trace"),
    exclude_seeds: set[int] | None = None,
    max_new_tokens: int = 128,
) -> tuple[GroundingScores, list[dict]]:
    """Ask ``policy`` (an ``InternVLAPolicy``) for boxes, points and traces on every ``frame_stride``-th
    frame of a LeRobot v3.0 dataset and score them against the frame's grounding labels.

    The question per kind is the one training asks (``grounding_prompt`` of the answer's label, the
    instruction for traces). Ground truth: the labelled answers in source pixels; a point is scored inside
    the box of the same frame's box answer (the target object). Episodes whose seed is in
    ``exclude_seeds`` (the training set's) are skipped. Returns the scores and one row per question.
    """
    from .lerobot_read import LeRobotV3Reader

    scores = GroundingScores()
    rows: list[dict] = []
    reader = LeRobotV3Reader(dataset)
    frames = 0
    for i in range(len(reader)):
        meta = reader.episodes[i]
        seed = int(meta.get("internvla/seed", meta["episode_index"]))
        if exclude_seeds and seed in exclude_seeds:
            continue
        ep = reader.episode(i)
        if ep.grounding is None:
            continue
        camera = ep.images[ep.annotation_camera]
        for t in range(0, ep.length, frame_stride):
            if max_frames is not None and frames >= max_frames:
                return scores, rows
            frames += 1
            truth_box = _first_geometry(ep.grounding.box_answer[t], "box")
            for kind in kinds:
                truth = _first_geometry(getattr(ep.grounding, f"{kind}_answer")[t], kind)
                if truth is None or (kind == "point" and truth_box is None):
                    continue  # out of view: nothing to score
                label, value = truth
                target = ep.instruction if kind == "trace" or not label else label
                result = policy.ground(camera[t], target, kinds=(kind,), max_new_tokens=max_new_tokens)
                row = {"seed": ep.seed, "frame": t, "kind": kind, "target": target,
                       "answer": result.raw_text.get(kind, "")}  # fmt: skip
                if kind == "box":
                    pred = result.boxes[0] if result.boxes else None
                    row["iou"] = scores.add_box(
                        None if pred is None else (pred.x1, pred.y1, pred.x2, pred.y2), value
                    )
                elif kind == "point":
                    pred = result.points[0] if result.points else None
                    row["inside"] = scores.add_point(None if pred is None else (pred.u, pred.v), truth_box[1])
                else:
                    pred = result.traces[0].points if result.traces else None
                    row["error_px"] = scores.add_trace(pred, value)
                rows.append(row)
    return scores, rows
