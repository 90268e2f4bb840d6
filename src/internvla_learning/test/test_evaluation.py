"""internvla_learning.evaluation: Wilson intervals, seeds and domains, per-task aggregation, the report and
its files, and the grounding metrics on hand-made cases."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
from internvla_learning.evaluation import (
    CSV_FIELDS,
    NOISE_SEED_LIMIT,
    NOISE_SEED_STRIDE,
    EpisodeResult,
    GroundingScores,
    arrival_lines,
    arrival_offsets,
    box_iou,
    check_seeds,
    comparison_lines,
    domain_for,
    episode_noise_seed,
    episode_plan,
    failure_kind,
    gripper_reopenings,
    longest_stall,
    mcnemar_exact_p,
    opening_after_close,
    paired_comparison,
    placement_kind,
    plot_comparison,
    point_in_box,
    read_csv,
    read_traces,
    report_lines,
    resample_polyline,
    summarise,
    trace_error,
    wilson,
    write_reports,
)

# --------------------------------------------------------------------------------------------- statistics


def test_wilson_matches_the_spec_values():
    low, high = wilson(160, 200)  # spec: n = 200, p = 0.80 -> [0.739, 0.850]
    assert (round(low, 3), round(high, 3)) == (0.739, 0.850)
    low, high = wilson(40, 50)  # n = 50 -> [0.670, 0.888]
    assert (round(low, 3), round(high, 3)) == (0.670, 0.888)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.27 < high < 0.29  # not the degenerate [0, 0] of the normal approximation
    low, high = wilson(10, 10)
    assert high == 1.0 and 0.71 < low < 0.73
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_seeds_refuse_the_training_range_unless_allowed():
    assert check_seeds(1_000_000, 3) == range(1_000_000, 1_000_003)
    with pytest.raises(ValueError, match="allow-training-seeds"):
        check_seeds(999_999, 5)
    assert check_seeds(0, 2, allow_training_seeds=True) == range(0, 2)
    with pytest.raises(ValueError):
        check_seeds(1_000_000, 0)
    plan = episode_plan(["a", "b", "c"], range(10, 17))
    assert [t for _, t, _ in plan] == ["a", "b", "c", "a", "b", "c", "a"]
    assert [s for _, _, s in plan] == list(range(10, 17))


@pytest.mark.parametrize("workers", [1, 2, 3, 16])
def test_domains_never_shared_between_workers_nor_consecutive_episodes(workers):
    per_worker = [[domain_for(w, j, workers) for j in range(300)] for w in range(workers)]
    for w, ids in enumerate(per_worker):
        assert all(120 <= d <= 232 for d in ids)
        assert all(a != b for a, b in itertools.pairwise(ids))  # consecutive episodes of one worker
        others = {d for v, other in enumerate(per_worker) if v != w for d in other}
        assert not set(ids) & others
    with pytest.raises(ValueError):
        domain_for(0, 0, 100)


def test_episode_noise_seeds_are_repeatable_and_neighbours_never_share_chunk_noise():
    seeds = range(1_000_000, 1_000_400)
    assert [episode_noise_seed(s) for s in seeds] == [episode_noise_seed(s) for s in seeds]
    # chunk k of an episode draws seed + k; an episode makes at most NOISE_SEED_STRIDE chunks
    ranges = sorted((episode_noise_seed(s), episode_noise_seed(s) + NOISE_SEED_STRIDE) for s in seeds)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(ranges))
    assert all(start >= 0 and end <= NOISE_SEED_LIMIT for start, end in ranges)  # policy_node's bounds
    assert 0 <= episode_noise_seed(10**12) <= NOISE_SEED_LIMIT - NOISE_SEED_STRIDE
    with pytest.raises(ValueError):
        episode_noise_seed(-1)


def _results():
    rows = []
    for i, (task, ok, steps) in enumerate(
        [("a", True, 10), ("a", False, 30), ("a", True, 20), ("b", False, 40), ("b", False, 50)]
    ):
        rows.append(
            EpisodeResult(
                index=i, robot="franka", task=task, seed=1_000_000 + i, success=ok, sim_steps=steps,
                policy_chunks=steps, goal_result="finished", wall_s=1.5, inference_p50_s=0.05,
                latency={"inference": [0.01 * (i + 1), 0.02], "dit": [0.001]},
            )
        )  # fmt: skip
    rows[-1].error = "RuntimeError: policy_node: configure failed"
    return rows


def test_summary_per_task_and_overall():
    s = {x.task: x for x in summarise(_results())}
    assert list(s) == ["a", "b", "all"]
    assert (s["a"].n, s["a"].successes, s["a"].mean_steps) == (3, 2, 20.0)
    assert (s["b"].successes, s["b"].errors) == (0, 1)
    assert (s["all"].n, s["all"].successes, s["all"].rate) == (5, 2, 0.4)
    assert (s["all"].low, s["all"].high) == wilson(2, 5)


def test_report_ends_with_the_success_line_and_files_round_trip(tmp_path):
    results = _results()
    lines = report_lines(results)
    assert lines[-1] == "success: 0.400"
    text = "\n".join(lines)
    assert "[0.118, 0.769]" in text  # Wilson of 2/5
    assert "inference" in text and "did not run" in text
    paths = write_reports(results, tmp_path / "out", "t")
    assert {p.name for p in paths.values()} == {"results.csv", "results.md", "success.png"}
    assert paths["plot"].stat().st_size > 1000
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_FIELDS and len(rows) == 5 and "latency" not in rows[0]
    back = read_csv(paths["csv"])
    assert [(r.task, r.success, r.sim_steps, r.error) for r in back] == [
        (r.task, r.success, r.sim_steps, r.error) for r in results
    ]
    md = paths["md"].read_text()
    assert "| a | 2/3 | 0.667 |" in md and "| all | 2/5 | 0.400 |" in md
    assert "Seeds 1000000..1000004 (5 episodes)" in md


def test_traced_episodes_add_a_trace_table_and_plot_and_stay_out_of_results_csv(tmp_path):
    results = _results()
    results[0].trace = [(0, 0.1, -0.05, 0.3), (1, 0.09, -0.04, 0.28)]
    results[2].trace = [(0, 0.2, 0.0, 0.35)]
    paths = write_reports(results, tmp_path / "out", "t")
    assert {"traces", "trace_plot"} <= set(paths) and paths["trace_plot"].stat().st_size > 1000
    with open(paths["traces"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["step"], r["dz_m"]) for r in rows] == [
        (str(results[0].seed), "0", "0.30000"),
        (str(results[0].seed), "1", "0.28000"),
        (str(results[2].seed), "0", "0.35000"),
    ]
    with open(paths["csv"]) as f:
        assert "trace" not in next(csv.DictReader(f))


def test_arrival_takes_the_first_step_below_two_cm_and_bins_success_by_its_x_offset(tmp_path):
    results = _results()
    # arrives 1.2 cm forward (the first low step, not the later one), fails
    results[0].success = False
    results[0].trace = [(0, 0.10, 0.0, 0.30), (5, 0.012, 0.003, 0.019), (6, -0.02, 0.0, 0.01)]
    results[1].success = True
    results[1].trace = [(0, 0.08, 0.0, 0.30), (4, -0.004, -0.001, 0.015)]  # arrives 0.4 cm behind
    results[2].trace = [(0, 0.2, 0.0, 0.35), (9, 0.05, 0.0, 0.04)]  # never gets low: no arrival
    assert arrival_offsets(results) == [(False, 0.012, 0.003), (True, -0.004, -0.001)]
    lines = arrival_lines(results)
    assert "2 of 3 traced episodes" in lines[1]
    assert "| -0.5 to +0.0 | 1 | 1.00 |" in lines and "| +1.0 to +1.5 | 1 | 0.00 |" in lines
    assert "| >= +2.0 | 0 | - |" in lines
    assert "| -0.5 to +0.0 | 1 | 1.00 |" in write_reports(results, tmp_path, "t")["md"].read_text()
    assert arrival_lines(_results()) == []  # untraced runs report no arrival


def test_reopenings_count_close_then_open_in_the_traced_gripper_command(tmp_path):
    results = _results()
    results[0].success = False  # closes at step 2, reopens at step 3, closes again: one reopening
    results[0].trace = [
        (0, 0.1, 0, 0.3, 1.0),
        (2, 0, 0, 0.01, 0.0),
        (3, 0, 0, 0.01, 1.0),
        (4, 0, 0, 0.01, 0.0),
    ]
    results[1].success = True  # closes and lifts: none
    results[1].trace = [(0, 0.1, 0, 0.3, 1.0), (2, 0, 0, 0.01, 0.0), (3, 0, 0, 0.05, 0.0)]
    results[2].trace = [(0, 0.2, 0.0, 0.35)]  # an older trace without the gripper column
    assert [gripper_reopenings(r) for r in results[:3]] == [1, 0, None]
    md = write_reports(results, tmp_path, "t")["md"].read_text()
    assert "1 of 1 failed and 0 of 1 successful traced episodes" in md
    with open(tmp_path / "traces.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["gripper_cmd"] for r in rows if r["seed"] == str(results[0].seed)] == [
        "1.000",
        "0.000",
        "1.000",
        "0.000",
    ]
    assert {r["gripper_cmd"] for r in rows if r["seed"] == str(results[2].seed)} == {""}


def test_failures_are_told_apart_by_the_gripper_and_the_height_after_the_first_close(tmp_path):
    results = _results()
    for r in results[:4]:
        r.success = False
    results[0].trace = [(0, 0.1, 0, 0.30, 1.0), (5, 0, 0, -0.01, 1.0)]  # never closes
    results[1].trace = [(0, 0.1, 0, 0.30, 1.0), (5, 0, 0, -0.01, 0.0), (9, 0, 0, -0.002, 0.0)]  # stuck
    results[2].trace = [(0, 0.1, 0, 0.30, 1.0), (5, 0, 0, -0.01, 0.0), (9, 0, 0, 0.05, 1.0)]  # rose alone
    results[3].trace = [(0, 0.2, 0.0, 0.35)]  # no gripper column
    results[4].success = True
    kinds = [failure_kind(r) for r in results[:5]]
    assert kinds == ["never closed", "closed, never rose", "rose without the target", None, None]
    md = write_reports(results, tmp_path, "t")["md"].read_text()
    assert "| closed, never rose | 1 |" in md and "| never closed | 1 |" in md
    # with the measured finger opening: the first close caught nothing (0.14) or the block (0.49)
    stuck, lifted = results[1], results[4]
    stuck.trace = [(0, 0.1, 0, 0.3, 1.0, 1.0), (5, 0, 0, -0.01, 0.0, 1.0)] + [
        (6 + i, 0, 0, -0.01, 0.0, 0.14) for i in range(4)
    ]
    lifted.trace = [(0, 0.1, 0, 0.3, 1.0, 1.0), (5, 0, 0, -0.01, 0.0, 1.0)] + [
        (6 + i, 0, 0, -0.01, 0.0, 0.49) for i in range(4)
    ]
    assert opening_after_close(stuck) == 0.14 and opening_after_close(results[2]) is None
    md = write_reports(results, tmp_path, "t")["md"].read_text()
    assert "| closed, never rose | 1 | 0.14 |" in md and "| (successes) | 1 | 0.49 |" in md
    assert "| never closed | 1 | - |" in md
    with open(tmp_path / "traces.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["seed"] == str(stuck.seed)]
    assert [r["finger_opening"] for r in rows][-1] == "0.140"


def test_a_hand_that_stops_for_fifteen_steps_is_counted_where_it_stopped(tmp_path):
    results = _results()
    for r in results[:3]:
        r.success = False
    approach = [(i, 0.1 - 0.01 * i, 0.0, 0.30 - 0.02 * i) for i in range(10)]  # 1-2 cm per step
    # stops 12 cm above the target for 20 steps (moving 1 mm per step), then moves on
    results[0].trace = (
        approach + [(10 + i, 0.0, 0.0, 0.12 - 0.001 * i) for i in range(21)] + [(31, 0, 0.05, 0.05)]
    )
    # reaches the table and sits there until the end
    results[1].trace = approach + [(10 + i, 0.0, -0.06, 0.005) for i in range(30)]
    results[2].trace = approach  # never stops
    assert longest_stall(results[0]) == (20, pytest.approx(0.10))
    assert longest_stall(results[1])[0] == 29 and longest_stall(results[2])[0] == 0
    assert longest_stall(results[3]) is None  # untraced
    md = write_reports(results, tmp_path, "t")["md"].read_text()
    assert "for >= 15 steps in a row): 2 of 3 failed traced episodes, for 24 steps (median)." in md
    assert "| < 2 | 1 |" in md and "| 8 to 18 | 1 |" in md and "| 2 to 8 | 0 |" in md


def test_traces_read_back_from_disk_give_the_same_failure_kinds(tmp_path):
    results = _results()
    results[0].success = False
    results[0].trace = [
        (0, 0.1, 0, 0.30, 1.0, 1.0),
        (5, 0, 0, -0.01, 0.0, 0.49),
        (9, 0, 0, -0.009, 0.0, 0.49),
    ]
    results[1].trace = [(0, 0.1, 0, 0.30, 1.0, 1.0), (5, 0, 0, -0.01, 0.0, 0.4), (9, 0, 0, 0.05, 1.0, 1.0)]
    results[2].trace = [(0, 0.2, 0.0, 0.35)]  # an older trace: no gripper columns
    write_reports(results, tmp_path, "t")
    back = read_traces(tmp_path / "traces.csv", read_csv(tmp_path / "results.csv"))
    assert [failure_kind(r) for r in back] == [failure_kind(r) for r in results]
    assert back[0].trace[1] == pytest.approx((5, 0, 0, -0.01, 0.0, 0.49)) and len(back[2].trace[0]) == 4
    assert back[3].trace == []


def test_failed_places_are_told_apart_by_the_traced_rise_of_the_target(tmp_path):
    results = _results()
    for r in results[:4]:
        r.success, r.target_to_container_m = False, 0.2
    start = (0, 0.1, 0, 0.30, 1.0, 1.0, 0.0)
    results[0].trace = [start, (5, 0, 0, 0.0, 0.0, 0.49, 0.005)]  # closed, the block never came up
    results[1].trace = [start, (5, 0, 0, 0.0, 0.0, 0.49, 0.10), (9, 0, 0, 0.0, 0.0, 0.49, 0.08)]  # carried
    results[2].trace = [start, (5, 0, 0, 0.0, 0.0, 0.49, 0.10), (9, 0, 0, 0.2, 1.0, 1.0, 0.0)]  # set down
    results[2].target_to_container_m = 0.12
    results[3].trace = [(0, 0.1, 0, 0.30, 1.0, 1.0)]  # an older trace without the rise column
    results[4].trace = [start]
    results[4].success = False  # a task without a container: no placement
    kinds = [placement_kind(r) for r in results]
    assert kinds == [
        "never lifted the target",
        "still held at the end",
        "set down off the container",
        None,
        None,
    ]
    results[1].success = True
    assert placement_kind(results[1]) is None
    results[1].success = False
    md = write_reports(results, tmp_path, "t")["md"].read_text()
    assert (
        "| never lifted the target | 1 | 20.0 |" in md and "| set down off the container | 1 | 12.0 |" in md
    )
    back = read_traces(tmp_path / "traces.csv", read_csv(tmp_path / "results.csv"))
    assert [placement_kind(r) for r in back] == kinds
    assert back[1].trace[1] == pytest.approx((5, 0, 0, 0, 0, 0.49, 0.1)) and len(back[3].trace[0]) == 6
    assert "failed place" not in write_reports(_results(), tmp_path / "none", "t")["md"].read_text()


def test_a_trace_of_an_episode_missing_from_the_results_is_refused(tmp_path):
    results = _results()
    results[0].trace = [(0, 0.1, 0, 0.30)]
    write_reports(results, tmp_path, "t")
    with pytest.raises(ValueError, match="not in the results"):
        read_traces(tmp_path / "traces.csv", _results()[1:])


def test_mcnemar_exact_p_hand_values():
    assert mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(7, 7) == 1.0
    assert mcnemar_exact_p(6, 0) == pytest.approx(2 / 64)  # six discordant episodes all one way
    assert mcnemar_exact_p(0, 6) == mcnemar_exact_p(6, 0)
    # 1 vs 9: 2 * (1 + 10) / 1024
    assert mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024)
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 2)


def test_paired_comparison_counts_episodes_both_runs_ran():
    a = _results()  # successes: 0, 2
    b = _results()
    b[0].success, b[1].success = False, True  # 0 only in a, 1 only in b
    c = paired_comparison(a, b[:4])  # episode 4 only in a: not paired
    assert (c.n, c.both, c.only_a, c.only_b, c.neither) == (4, 1, 1, 1, 1)
    assert c.p_value == 1.0
    other = _results()
    for r in other:
        r.seed += 10
    with pytest.raises(ValueError, match="share no"):
        paired_comparison(a, other)


def test_comparison_table_has_a_row_per_run_against_the_first(tmp_path):
    a, b = _results(), _results()
    b[1].success, b[3].success = True, True
    lines = comparison_lines([("ref", a), ("new", b)])
    assert lines[0].startswith("| run | success |") and "vs ref" in lines[0]
    assert lines[2].startswith("| ref | 2/5 (40.0 %) |") and lines[2].endswith("| - | - |")
    assert "| new | 4/5 (80.0 %) |" in lines[3] and "| 0 / 2 (of 5) | 0.500 |" in lines[3]
    assert plot_comparison([("ref", a), ("new", b)], tmp_path / "c.png").stat().st_size > 1000


def test_compare_evals_script_reads_eval_directories_and_writes_its_report(tmp_path, capsys):
    from bench_scripts import load_bench

    a, b = _results(), _results()
    b[1].success = True
    a[1].trace = [(0, 0.1, 0, 0.30, 1.0), (5, 0, 0, -0.01, 1.0)]  # never closed
    write_reports(a, tmp_path / "a", "a")
    write_reports(b, tmp_path / "b", "b")
    script = load_bench("compare_evals")
    assert script.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    report = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| a | 2/5 (40.0 %) |" in report and "| 0 / 1 (of 5) | 1.000 |" in report
    assert (tmp_path / "cmp" / "comparison.png").exists()
    assert "| a | 2/5" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="labels"):
        script.main([str(tmp_path / "a"), "--labels", "x", "y"])
    with pytest.raises(SystemExit, match=r"results\.csv"):
        script.main([str(tmp_path / "missing")])


def test_graded_progress_medians_the_measured_episodes_and_counts_lifts(tmp_path):
    results = _results()
    for r in results[:3]:
        r.start_tcp_to_target_m = 0.2
    results[0].final_tcp_to_target_m, results[0].target_rise_m = 0.02, 0.05  # lifted
    results[1].final_tcp_to_target_m, results[1].target_rise_m = 0.10, 0.0
    results[2].final_tcp_to_target_m, results[2].target_rise_m = 0.04, 0.019  # just below LIFT_M
    s = {x.task: x for x in summarise(results)}
    assert s["a"].median_tcp_to_target_m == 0.04 and s["a"].lifted == 1
    assert s["a"].median_start_tcp_to_target_m == 0.2
    assert s["b"].median_tcp_to_target_m is None and s["b"].lifted == 0  # nothing measured: n/a, not 0
    md = write_reports(results, tmp_path / "out", "t")["md"].read_text()
    assert "| a | 2/3 | 0.667 | [0.208, 0.939] | 20.0 | 0 | 20.0 → 4.0 | 1/3 |" in md
    assert "| b | 0/2 | 0.000 |" in md and "| n/a → n/a | 0/2 |" in md
    back = read_csv(tmp_path / "out" / "results.csv")
    assert [r.final_tcp_to_target_m for r in back] == [0.02, 0.10, 0.04, None, None]
    assert [r.target_rise_m for r in back] == [0.05, 0.0, 0.019, None, None]


def test_a_push_and_a_place_are_measured_on_the_table_and_read_back(tmp_path):
    """eval_sim records how far the target moved (a push) and how far it ends from the container (a place);
    results.csv keeps both, and files written before these columns read back as not measured."""
    pytest.importorskip("mujoco")
    from bench_scripts import load_bench

    from internvla_sim.env import SimEnv

    eval_sim = load_bench("eval_sim")
    env = SimEnv("red_on_plate", 3, 0.1, 64, 64)
    try:
        dx, dy, to_plate = eval_sim._target_progress(env)
        now = env.object_positions()
        assert dx == 0.0 and dy == 0.0
        assert to_plate == pytest.approx(float(np.linalg.norm(now["red_block"][:2] - now["plate"][:2])))
    finally:
        env.close()
    env = SimEnv("push_blue_left", 3, 0.1, 64, 64)
    try:
        assert eval_sim._target_progress(env)[2] is None  # no container
    finally:
        env.close()
    results = _results()
    results[0].target_shift_x_m, results[0].target_shift_y_m, results[0].target_to_container_m = (
        0.01,
        0.09,
        0.2,
    )
    write_reports(results, tmp_path / "out", "t")
    back = read_csv(tmp_path / "out" / "results.csv")
    assert (back[0].target_shift_x_m, back[0].target_shift_y_m, back[0].target_to_container_m) == (
        0.01,
        0.09,
        0.2,
    )
    assert back[1].target_shift_y_m is None and back[1].target_to_container_m is None

    from internvla_learning.evaluation import table_progress_lines

    assert table_progress_lines(results[1:]) == []  # not measured: no table
    for r in results:
        r.target_shift_x_m, r.target_shift_y_m = 0.0, (0.10 if r.success else 0.02)
    lines = table_progress_lines(results)
    assert "| a | succeeded (2) | +0.0 / +10.0 | 20.0 |" in lines  # the container gap of the one measured
    assert "| a | failed (1) | +0.0 / +2.0 | - |" in lines
    write_reports(results, tmp_path / "again", "t")
    assert "| a | failed (1) | +0.0 / +2.0 | - |" in (tmp_path / "again" / "results.md").read_text()


# ---------------------------------------------------------------------------------------------- grounding


def test_box_iou_hand_cases():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert box_iou([10, 10, 0, 0], [0, 0, 5, 5]) == pytest.approx(0.25)  # corners in any order
    assert box_iou([0, 0, 0, 10], [0, 0, 0, 10]) == 0.0  # degenerate boxes
    assert box_iou([0, 0, 10, 10], [2, 2, 8, 8]) == pytest.approx(36 / 100)


def test_point_in_box_hand_cases():
    assert point_in_box((5, 5), (0, 0, 10, 10))
    assert point_in_box((10, 0), (0, 0, 10, 10))  # edges count
    assert not point_in_box((10.01, 5), (0, 0, 10, 10))
    assert point_in_box((5, 5), (10, 10, 0, 0))


def test_trace_error_resamples_by_arc_length():
    line = resample_polyline([[0, 0], [10, 0]], 6)
    np.testing.assert_allclose(line[:, 0], [0, 2, 4, 6, 8, 10])
    bent = resample_polyline([[0, 0], [10, 0], [10, 10]], 3)
    np.testing.assert_allclose(bent, [[0, 0], [10, 0], [10, 10]])
    np.testing.assert_allclose(resample_polyline([[3, 4]], 3), [[3, 4]] * 3)
    # the same path with more points has no error; a shifted one has the shift
    assert trace_error([[0, 0], [10, 0]], [[0, 0], [5, 0], [10, 0]]) == pytest.approx(0.0)
    assert trace_error([[0, 3], [10, 3]], [[0, 0], [10, 0]]) == pytest.approx(3.0)
    # reversed direction: the ends are compared with each other (0..10 vs 10..0 at 3 points: 10, 0, 10)
    assert trace_error([[0, 0], [10, 0]], [[10, 0], [0, 0]], n=3) == pytest.approx(20 / 3)


def test_grounding_scores_count_unparsed_answers_as_misses():
    s = GroundingScores()
    s.add_box([0, 0, 10, 10], [0, 0, 10, 10])
    s.add_box([0, 0, 10, 10], [5, 0, 15, 10])  # IoU 1/3: a miss
    s.add_box(None, [0, 0, 1, 1])
    s.add_point((1, 1), (0, 0, 2, 2))
    s.add_point(None, (0, 0, 2, 2))
    s.add_trace([[0, 2], [4, 2]], [[0, 0], [4, 0]])
    s.add_trace(None, [[0, 0], [4, 0]])
    out = s.summary()
    assert out["box_n"] == 3 and out["box_iou50_accuracy"] == pytest.approx(1 / 3)
    assert out["box_mean_iou"] == pytest.approx((1 + 1 / 3) / 3)
    assert out["point_in_box_accuracy"] == 0.5
    assert (out["trace_n"], out["trace_parsed"], out["trace_error_px"]) == (2, 1, pytest.approx(2.0))
    assert out["unparsed"] == {"box": 1, "point": 1, "trace": 1}


class _FakePolicy:
    """Answers every ground() with fixed geometry (source pixels) through the real parser path."""

    def __init__(self, box, point, trace):
        self.box, self.point, self.trace = box, point, trace
        self.asked = []

    def ground(self, image, instruction, kinds=("box",), max_new_tokens=128):
        import json

        from internvla_core.grounding import build_grounding_result

        kind = kinds[0]
        self.asked.append((kind, instruction))
        text = {"box": [{"bbox_2d": self.box}], "point": [{"point_2d": self.point}],
                "trace": [{"trace": self.trace}]}[kind]  # fmt: skip
        size = (image.shape[1], image.shape[0])
        return build_grounding_result(instruction, kinds, {kind: json.dumps(text)}, size, size)


def test_evaluate_grounding_on_a_dataset_with_a_fake_model(tmp_path):
    from internvla_learning.evaluation import evaluate_grounding
    from internvla_learning.lerobot_v3 import LeRobotV3Writer
    from learning_synthetic import JOINTS, make_episode

    root = tmp_path / "ds"
    with LeRobotV3Writer(root, 10, "franka", {"third_person": (64, 64)}, JOINTS) as writer:
        for seed in range(2):
            writer.add_episode(make_episode(seed, length=6, size=64, cameras=("third_person",)))
    from internvla_learning.lerobot_read import LeRobotV3Reader

    ep = LeRobotV3Reader(root).episode(1)
    assert ep.grounding.box_answer[0] == '[{"bbox_2d": [0, 1, 2, 3], "label": "cube"}]'  # the truth scored
    # that box, a point at its centre, a trace far from the labelled [[1, 2], [3, 4]]
    model = _FakePolicy([0, 1, 2, 3], [1, 2], [[61, 62], [63, 64]])
    scores, rows = evaluate_grounding(model, root, frame_stride=100, exclude_seeds={0})
    assert {r["seed"] for r in rows} == {1}  # seed 0 held out of the scoring (a training seed)
    out = scores.summary()
    assert out["box_n"] == 1 and out["box_iou50_accuracy"] == 1.0
    assert out["point_in_box_accuracy"] == 1.0
    assert out["trace_error_px"] == pytest.approx(np.hypot(60, 60))
    assert ("trace", ep.instruction) in model.asked  # traces are asked with the instruction
    assert ("box", "cube") in model.asked and ("point", "grasp") in model.asked  # boxes with the label
    model.box = [10, 10, 20, 20]
    scores, _ = evaluate_grounding(model, root, frame_stride=100)
    assert scores.summary()["box_iou50_accuracy"] == 0.0 and scores.box_n == 2
