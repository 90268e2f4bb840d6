"""Lifecycle soak: N configure -> activate -> deactivate -> cleanup cycles per node in one process.

    source scripts/env.sh && python bench/bench_lifecycle_soak.py [--cycles 1000] [--no-spin]
                                                                  [module:Class ...] [-p NAME:=VALUE ...]

Targets: the ``module:Class`` arguments (with ``-p`` overrides), else every entry of
``internvla_ros_common.soak_targets.SOAK_TARGETS`` whose module imports (others are listed as
skipped). Each node gets a private context and, unless ``--no-spin``, a MultiThreadedExecutor
spinning it on another thread while the transitions are triggered from this one: the case that
killed the old executor after 21-84 cycles (``RCLError: action server pointer is invalid``).

Printed per node: cycles done, failed transitions, cycles/s, resident set size after 10 warm-up
cycles and at the end (and every 10 % of the way), publishers/subscriptions/timers before and after.
Numbers only, never asserted: they depend on the machine's load.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    """Current resident set size of this process [MB], from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_class(target: str) -> type:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def parse_override(text: str) -> tuple[str, Any]:
    import yaml

    name, sep, value = text.partition(":=")
    if not sep:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME:=VALUE")
    return name, yaml.safe_load(value)


def soak(node_class: type, overrides: dict[str, Any], cycles: int, spin: bool, quiet: bool) -> dict[str, Any]:
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.logging import LoggingSeverity
    from rclpy.parameter import Parameter

    from internvla_ros_common.testing import Spinner, ros_context, run_lifecycle_cycles

    with ros_context() as context:
        node = node_class(
            context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
        )
        if quiet:  # a model node logs its load on every configure: 1,000 times
            node.get_logger().set_level(LoggingSeverity.ERROR)
        counts = lambda: (len(list(node.publishers)), len(list(node.subscriptions)), len(list(node.timers)))  # noqa: E731
        before_counts = counts()
        executor = spinner = None
        if spin:
            executor = MultiThreadedExecutor(num_threads=4, context=context)
            executor.add_node(node)
            spinner = Spinner(executor)
        try:
            warm = run_lifecycle_cycles(node, 10)
            gc.collect()
            rss_before = rss_mb()
            checkpoints: list[float] = []
            step = max(cycles // 10, 1)

            def on_cycle(index: int) -> None:
                if (index + 1) % step == 0:
                    gc.collect()
                    checkpoints.append(rss_mb())

            start = time.perf_counter()
            results = run_lifecycle_cycles(node, cycles, on_cycle=on_cycle)
            elapsed = time.perf_counter() - start
            gc.collect()
            rss_after = rss_mb()
        finally:
            if spinner is not None:
                spinner.stop()
                executor.shutdown(timeout_sec=2.0)
        after_counts = counts()
        node.destroy_node()
    failed = [r for r in warm + results if any(label != "success" for label in r)]
    return {
        "cycles": len(results),
        "failed_cycles": len(failed),
        "first_failure": failed[0] if failed else None,
        "cycles_per_s": len(results) / elapsed if elapsed > 0 else float("nan"),
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "rss_checkpoints_mb": checkpoints,
        "entities_before": before_counts,
        "entities_after": after_counts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets", nargs="*", help="module:Class of ManagedNode subclasses (default: SOAK_TARGETS)"
    )
    parser.add_argument(
        "--cycles", type=int, default=1000, help="cycles per node after 10 warm-up cycles (default 1000)"
    )
    parser.add_argument(
        "-p",
        dest="overrides",
        type=parse_override,
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="parameter override for the targets given on the command line",
    )
    parser.add_argument("--no-spin", action="store_true", help="no executor thread (transitions only)")
    parser.add_argument("--verbose", action="store_true", help="keep the nodes' info and warning logs")
    args = parser.parse_args(argv)

    sys.path[:0] = [str(p) for p in sorted((ROOT / "src").iterdir()) if p.is_dir()]
    from internvla_ros_common.soak_targets import SOAK_TARGETS

    targets = [(t, dict(args.overrides)) for t in args.targets] or list(SOAK_TARGETS)
    print(f"lifecycle soak: {args.cycles} cycles per node, executor thread: {not args.no_spin}")
    status = 0
    for target, overrides in targets:
        try:
            node_class = load_class(target)
        except (ImportError, AttributeError) as exc:
            print(f"  {target}: skipped ({type(exc).__name__}: {exc})")
            continue
        try:
            r = soak(node_class, overrides, args.cycles, spin=not args.no_spin, quiet=not args.verbose)
        except Exception as exc:  # a node that cannot even be built: report and go on with the next
            print(f"  {target}: error {type(exc).__name__}: {exc}")
            status = 1
            continue
        checkpoints = " ".join(f"{v:.1f}" for v in r["rss_checkpoints_mb"])
        print(
            f"  {target}: {r['cycles']} cycles, {r['failed_cycles']} failed, {r['cycles_per_s']:.1f} cycles/s, "
            f"RSS {r['rss_before_mb']:.1f} -> {r['rss_after_mb']:.1f} MB "
            f"({r['rss_after_mb'] - r['rss_before_mb']:+.1f}), pub/sub/timers "
            f"{r['entities_before']} -> {r['entities_after']}"
        )
        print(f"      RSS every 10 %: {checkpoints}")
        if r["first_failure"]:
            print(f"      first failed cycle: {r['first_failure']}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
