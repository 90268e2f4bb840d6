"""Write staged episodes (``*.npz`` from :func:`~internvla_learning.episode.save_episode`) as datasets.

    python -m internvla_learning.write_dataset --staging DIR --out DIR --format v3|m1|both [--overwrite]
    internvla-write-dataset ...   (the same, as a console script)

Episodes are read one at a time in file-name order and fed to the writer(s); with ``--format both`` each
file is loaded once and written to ``OUT/lerobot_v3`` and ``OUT/m1`` (with a single format, ``OUT`` is the
dataset root). The first episode sets fps, cameras (all of its cameras unless ``--cameras``), joint names
and the robot type. A bad episode stops the run with its file name and seed, and nothing that looks like a
complete dataset is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .episode import load_episode
from .lerobot_v3 import LeRobotV3Writer
from .m1_layout import M1LayoutWriter


def staged_files(staging: Path) -> list[Path]:
    """The staged episodes of ``staging``, or of its ``episodes/`` (the data engine's output layout)."""
    files = sorted(p for p in staging.glob("*.npz") if p.is_file())
    if not files:
        files = sorted(p for p in staging.glob("episodes/*.npz") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no staged episodes (*.npz) in {staging} or {staging / 'episodes'}")
    return files


def outputs(out: Path, fmt: str) -> dict[str, Path]:
    if fmt == "both":
        return {"v3": out / "lerobot_v3", "m1": out / "m1"}
    return {fmt: out}


def write_dataset(staging: str | Path, out: str | Path, fmt: str = "v3", overwrite: bool = False,
                  cameras: list[str] | None = None, progress: bool = True, **writer_options) -> dict[str, Path]:  # fmt: skip
    """Library form of the command; returns {format: dataset root}."""
    if fmt not in ("v3", "m1", "both"):
        raise ValueError(f"format must be v3, m1 or both, got {fmt!r}")
    files = staged_files(Path(staging))
    targets = outputs(Path(out), fmt)
    for root in targets.values():  # refuse before any work is done
        if root.exists() and not overwrite:
            raise FileExistsError(f"dataset output {root} already exists; pass --overwrite to replace it")
    first = load_episode(files[0])
    cams = cameras or list(first.images)
    missing = [c for c in cams if c not in first.images]
    if missing:
        raise ValueError(
            f"{files[0].name}: cameras {missing} not in the episode (has {sorted(first.images)})"
        )
    shapes = {c: tuple(first.images[c].shape[1:3]) for c in cams}
    common = dict(fps=first.fps, robot_type=first.robot, cameras=shapes, joint_names=first.joint_names,
                  overwrite=overwrite)  # fmt: skip
    writers = {}
    try:
        for kind, root in targets.items():
            cls = LeRobotV3Writer if kind == "v3" else M1LayoutWriter
            options = {k: v for k, v in writer_options.items() if v is not None}
            if kind == "m1":
                options.pop("data_files_size_in_mb", None)
                options.pop("video_files_size_in_mb", None)
            else:
                options.pop("unnorm_key", None)
            writers[kind] = cls(root, **common, **options)
        bar = tqdm(files, desc="episodes", unit="ep", disable=not progress)
        for i, path in enumerate(bar):
            episode = first if i == 0 else load_episode(path)
            for writer in writers.values():
                try:
                    writer.add_episode(episode)
                except ValueError as exc:
                    raise ValueError(f"{path.name}: {exc}") from exc
            bar.set_postfix(frames=next(iter(writers.values())).total_frames)
            del episode
            first = None
        return {kind: writer.close() for kind, writer in writers.items()}
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="internvla-write-dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--staging", required=True, type=Path, help="directory of staged episode .npz files")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="dataset root (with --format both: parent of lerobot_v3/ and m1/)",
    )
    parser.add_argument("--format", choices=["v3", "m1", "both"], default="v3")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output")
    parser.add_argument(
        "--cameras", nargs="+", help="camera keys to write (default: all of the first episode)"
    )
    parser.add_argument(
        "--unnorm-key", help="dataset_statistics.json key of the m1 export (default: from the embodiment)"
    )
    parser.add_argument("--crf", type=int, help="H.264 quality (lower is better; default 23)")
    parser.add_argument("--data-file-mb", type=float, help="v3 data file size limit (default 100)")
    parser.add_argument("--video-file-mb", type=float, help="v3 video file size limit (default 200)")
    parser.add_argument(
        "--quantile-sample", type=int, help="rows kept for quantiles per feature (default 100000)"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        roots = write_dataset(
            args.staging, args.out, args.format, overwrite=args.overwrite, cameras=args.cameras,
            progress=not args.no_progress, unnorm_key=args.unnorm_key, crf=args.crf,
            data_files_size_in_mb=args.data_file_mb, video_files_size_in_mb=args.video_file_mb,
            reservoir_size=args.quantile_sample,
        )  # fmt: skip
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"internvla-write-dataset: error: {exc}", file=sys.stderr)
        return 2
    for kind, root in roots.items():
        print(f"{kind}: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
