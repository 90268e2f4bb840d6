"""The newest input of each kind, and whether together they make an observation the policy may use.

Why a separate store: subscription callbacks must stay cheap (they only record the message and its
stamp), while the inference worker needs to *wait* for an observation newer than the one it used
last and to refuse one that is missing a view or too old. A stale image fed to the model produces a
chunk for a world that no longer exists, and a chunk built on the same image twice is a wasted
query, so both checks happen here, with a reason precise enough to show on /diagnostics.

Pure Python (no ROS): values are whatever the caller stores (ROS messages in the node), stamps are
seconds on the clock the caller also passes as ``now`` (ROS time, or simulation time in lock-step).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JOINT_STATE = "joint_state"
EE_POSE = "ee_pose"


@dataclass(frozen=True)
class Stamped:
    value: Any
    stamp: float  # seconds, the message's own header stamp
    received: float  # time.monotonic() when it arrived (for logs; never compared with ``stamp``)


@dataclass(frozen=True)
class Observation:
    """Images by view (in the order the policy wants them) and the state seen with them."""

    images: dict[str, Any]
    stamp: float  # the primary (first) view's stamp: what the chunk's observation_stamp is set to
    ages: dict[str, float]  # seconds between each view's stamp and ``now`` at assembly
    joint_state: Stamped | None = None
    ee_pose: Stamped | None = None

    @property
    def views(self) -> list[Any]:
        return list(self.images.values())


@dataclass(frozen=True)
class NotReady:
    """Why no observation can be used yet; ``reason`` is a sentence for logs and diagnostics."""

    reason: str
    missing: tuple[str, ...] = ()
    stale: dict[str, float] = field(default_factory=dict)  # view -> seconds beyond max_age


class ObservationStore:
    """Thread-safe latest message per input; the worker waits on it, callbacks only ``put``."""

    def __init__(self) -> None:
        self._latest: dict[str, Stamped] = {}
        self._changed = threading.Condition()

    def put(self, name: str, value: Any, stamp: float) -> None:
        with self._changed:
            self._latest[name] = Stamped(value, float(stamp), time.monotonic())
            self._changed.notify_all()

    def latest(self, name: str) -> Stamped | None:
        with self._changed:
            return self._latest.get(name)

    def clear(self) -> None:
        with self._changed:
            self._latest.clear()

    def wake(self) -> None:
        """Wake every waiter now (used on deactivation so a waiting worker re-checks and exits)."""
        with self._changed:
            self._changed.notify_all()

    def wait_for_newer(
        self,
        name: str,
        after: float | None,
        timeout: float,
        keep_waiting: Callable[[], bool] = lambda: True,
    ) -> bool:
        """Block until ``name`` has a stamp newer than ``after`` (None: any message).

        Returns False on timeout or as soon as ``keep_waiting()`` turns false (checked on every
        wake-up, so call ``wake()`` after changing what it reads).
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while keep_waiting():
                entry = self._latest.get(name)
                if entry is not None and (after is None or entry.stamp > after):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return False

    def assemble(self, required_views: list[str] | tuple[str, ...], now: float, max_age: float):
        """An ``Observation`` of the required views, or ``NotReady`` saying which is missing or stale.

        Every required view must exist and be at most ``max_age`` seconds old at ``now``; a stamp in
        the future (clock offset between machines) counts as age 0 rather than as an error, since
        refusing it would stop the robot for a clock problem the operator cannot see.
        """
        if not required_views:
            raise ValueError("an observation needs at least one view")
        with self._changed:
            entries = {view: self._latest.get(view) for view in required_views}
            joint_state = self._latest.get(JOINT_STATE)
            ee_pose = self._latest.get(EE_POSE)
        missing = tuple(view for view, entry in entries.items() if entry is None)
        if missing:
            names = ", ".join(f"'{view}'" for view in missing)
            return NotReady(f"missing view {names} (no image received yet)", missing=missing)
        ages = {view: max(0.0, now - entry.stamp) for view, entry in entries.items()}
        stale = {view: age - max_age for view, age in ages.items() if age > max_age}
        if stale:
            parts = ", ".join(f"'{view}' by {excess * 1000:.0f} ms" for view, excess in stale.items())
            return NotReady(
                f"stale view {parts} (older than max_observation_age {max_age * 1000:.0f} ms)", stale=stale
            )
        return Observation(
            images={view: entry.value for view, entry in entries.items()},
            stamp=entries[required_views[0]].stamp,
            ages=ages,
            joint_state=joint_state,
            ee_pose=ee_pose,
        )
