"""Data numbers: engine episodes/min and frames/s, MB per episode, dataset writer and MCAP converter
frames/s, and the writer's memory while it writes many episodes.

    source scripts/env.sh && python bench/bench_data.py [--robot franka] [--episodes 6] [--workers 1 2]
                                                        [--memory-episodes 1000] [--skip-converter]

1. Engine: ``internvla_sim.data_engine.generate`` on seeds [0, N) at 224 px, once per worker count
   (a fresh staging dir each time), wall time -> episodes/min (successful ones) and frames/s.
2. Size: staged .npz MB per episode (raw uint8 frames, compressed arrays) and the LeRobot v3.0 dataset
   MB per episode (H.264 crf 23 + parquet).
3. Writers: frames/s of the v3.0 and the M1 v2.1 writers over the staged episodes.
4. Converter: a recorded demo episode (``internvla_bringup.demo``, rosbag2 MCAP) -> Episode, frames/s.
5. Memory: a child process streams the staged episodes through the v3.0 writer ``--memory-episodes``
   times in all (the same episodes re-numbered: the writer's memory does not depend on content) and
   prints its resident set size every 10 % of the way and its peak. Flat = streaming.
Printed, never asserted; the numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process [MB], from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def bench_engine(robot: str, episodes: int, workers: list[int], work: Path) -> Path:
    from internvla_sim.data_engine import generate

    staging = None
    for count in workers:
        staging = work / f"staging_w{count}"
        start = time.perf_counter()
        stats = generate(staging, robot, episodes, 0, count, (224, 224))
        wall = time.perf_counter() - start
        written = stats.get("written", len(list((staging / "episodes").glob("*.npz"))))
        frames = stats.get("frames", 0)
        print(
            f"engine  {robot} workers={count}: {written}/{episodes} episodes written in {wall:.1f} s -> "
            f"{60 * written / wall:.1f} episodes/min, {frames / wall:.1f} frames/s ({frames} frames)"
        )
    return staging


def bench_sizes_and_writers(staging: Path, work: Path) -> None:
    from internvla_learning.write_dataset import write_dataset

    files = sorted((staging / "episodes").glob("*.npz"))
    frames = 0
    for path in files:
        with __import__("numpy").load(path) as data:
            frames += int(data["timestamps"].shape[0])
    print(f"size    staged .npz: {dir_mb(staging / 'episodes') / len(files):.2f} MB per episode "
          f"({frames / len(files):.0f} frames of 224x224)")  # fmt: skip
    for fmt in ("v3", "m1"):
        out = work / f"dataset_{fmt}"
        start = time.perf_counter()
        write_dataset(staging, out, fmt, overwrite=True, progress=False)
        wall = time.perf_counter() - start
        print(f"writer  {fmt}: {frames / wall:.0f} frames/s; {dir_mb(out) / len(files):.2f} MB per episode")


def bench_converter(work: Path) -> None:
    demo = work / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "internvla_bringup.demo", "--steps", "40", "--out", str(demo)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if run.returncode != 0:
        print(f"converter: the demo failed, skipped ({run.stderr.strip().splitlines()[-1:]})")
        return
    from internvla_learning.mcap_convert import convert

    contract = ROOT / "src/internvla_bringup/config/recording/sim_franka.yaml"
    start = time.perf_counter()
    results = convert([demo], contract, work / "converted", overwrite=True)
    wall = time.perf_counter() - start
    (result,) = results.values()
    if str(result).startswith("error"):
        print(f"converter: {result}")
        return
    from internvla_learning.episode import load_episode

    length = load_episode(result).length
    print(
        f"convert demo MCAP ({dir_mb(demo):.1f} MB bag): {length} frames in {wall:.2f} s -> {length / wall:.0f} frames/s"
    )


def memory_child(staging: Path, out: Path, episodes: int) -> None:
    """Runs in a child process: stream ``episodes`` episodes through one v3.0 writer, print RSS."""
    import dataclasses

    from internvla_learning.episode import load_episode
    from internvla_learning.lerobot_v3 import LeRobotV3Writer

    files = sorted((staging / "episodes").glob("*.npz"))
    first = load_episode(files[0])
    cameras = {k: tuple(v.shape[1:3]) for k, v in first.images.items()}
    samples = []
    with LeRobotV3Writer(out, fps=first.fps, robot_type=first.robot, cameras=cameras,
                         joint_names=first.joint_names, overwrite=True) as writer:  # fmt: skip
        for i in range(episodes):
            episode = dataclasses.replace(load_episode(files[i % len(files)]), seed=i)
            writer.add_episode(episode)
            if (i + 1) % max(1, episodes // 10) == 0:
                samples.append((i + 1, *rss_mb()))
    print(json.dumps({"samples": samples, "peak_mb": rss_mb()[1], "dataset_mb": dir_mb(out)}))


def bench_memory(staging: Path, work: Path, episodes: int) -> None:
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(staging), str(work / "memory_ds"), str(episodes)],
        capture_output=True, text=True, timeout=7200,
    )  # fmt: skip
    if run.returncode != 0:
        print(f"memory: child failed: {run.stderr[-1500:]}")
        return
    result = json.loads(run.stdout.strip().splitlines()[-1])
    trail = ", ".join(f"{n}: {rss:.0f}" for n, rss, _ in result["samples"])
    print(f"memory  v3.0 writer, {episodes} episodes in {time.perf_counter() - start:.0f} s "
          f"({result['dataset_mb']:.0f} MB dataset): RSS MB after episodes [{trail}]; peak {result['peak_mb']:.0f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robot", choices=["franka", "widowx"], default="franka")
    parser.add_argument("--episodes", type=int, default=6, help="seeds the engine attempts per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--memory-episodes", type=int, default=1000, help="episodes for the memory run")
    parser.add_argument("--skip-converter", action="store_true", help="do not run the demo + converter")
    parser.add_argument("--memory-child", nargs=3, metavar=("STAGING", "OUT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        staging, out, n = args.memory_child
        memory_child(Path(staging), Path(out), int(n))
        return
    os.environ.setdefault("MUJOCO_GL", "egl")
    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        print(f"== data ({os.cpu_count()} cores)")
        staging = bench_engine(args.robot, args.episodes, args.workers, work)
        bench_sizes_and_writers(staging, work)
        if not args.skip_converter:
            bench_converter(work)
        if args.memory_episodes > 0:
            bench_memory(staging, work, args.memory_episodes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
