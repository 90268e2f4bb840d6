"""Seconds <-> ROS (sec, nanosec) pairs without the rounding trap.

Splitting ``t`` as ``int(t)`` and ``round(frac(t) * 1e9) % 1e9`` turns 2.9999999997 (three 0.1 s control
steps summed in floating point) into sec 2, nanosec 0: a stamp one second in the past. In lock-step
simulation that made the policy think observation t=3.0 was older than the one it had used and the sim
think the executor had not answered, stalling the loop until its timeout. Rounding the whole value to
nanoseconds first, then dividing, cannot lose the carry.
"""

from __future__ import annotations

NANOSECONDS = 1_000_000_000


def split_seconds(seconds: float) -> tuple[int, int]:
    """(sec, nanosec) with 0 <= nanosec < 1e9, as builtin_interfaces Time and Duration need."""
    sec, nanosec = divmod(round(seconds * NANOSECONDS), NANOSECONDS)
    return int(sec), int(nanosec)


def join_seconds(sec: int, nanosec: int) -> float:
    return sec + nanosec / NANOSECONDS
