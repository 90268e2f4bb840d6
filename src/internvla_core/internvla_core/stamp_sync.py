"""Pair messages of several inputs by stamp: message_filters' ApproximateTime policy, without ROS.

Why: a grounding result lifted to 3D with a depth image from another moment puts the object where it
was, not where it is. The grounding node used to pair an image with the *latest* depth and camera_info;
this module pairs them by stamp, as ``message_filters.ApproximateTimeSynchronizer`` does, so the
node (and its tests) need no ROS to get it right.

Semantics (those of message_filters' C++ ``sync_policies::ApproximateTime``, stamps in integer ns):

- each input has its own queue, sorted by stamp, of at most ``queue_size`` messages; on overflow the
  oldest message of that input is dropped and the input may not be the pivot until every other
  input has moved past it (a dropped message might have made a better set);
- a set holds one message per input and is emitted only when every input has a message and the
  set's stamps span at most ``slop`` (message_filters' ``max_interval_duration``);
- the pivot rule: the first candidate's latest message is the pivot; the candidate is replaced by
  any set of smaller span found by moving the oldest head forward, and is emitted once it is
  provably optimal: when the pivot itself became the oldest head, when no later set can be smaller
  (any later set contains the pivot's stamp), or, with ``min_periods`` (message_filters'
  ``inter_message_lower_bound`` per input), when even the earliest possible next messages cannot
  beat it. Identical stamps (a simulator, a driver stamping colour and depth alike) are therefore
  emitted at once; stamps a few ms apart wait for the next message of the inputs concerned;
- on emission every message older than the set's is dropped from its queue;
- unlike the C++ policy (which expects in-order arrival), a message that arrives out of order is
  sorted into its queue; a message no newer than the last set emitted on its input is *late* and
  dropped (sets are emitted in stamp order); a message with a stamp already queued on its input
  replaces the queued one (a re-publication).

``dropped`` counts what was thrown away, by reason, for diagnostics.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from internvla_core.stamps import NANOSECONDS


def to_nanoseconds(seconds: float) -> int:
    """Seconds as integer nanoseconds (stamps compare exactly as integers)."""
    return round(seconds * NANOSECONDS)


@dataclass(frozen=True)
class MatchedSet:
    """One message per input, by input name, with their stamps (ns)."""

    stamps: Mapping[str, int]
    messages: Mapping[str, Any]

    @property
    def span(self) -> int:
        """Latest minus earliest stamp of the set, in ns."""
        return max(self.stamps.values()) - min(self.stamps.values())


@dataclass(order=True)
class _Queued:
    stamp: int
    message: Any = field(compare=False)


@dataclass
class _Candidate:
    heads: list[int]
    start: int
    end: int


class ApproximateTimeSync:
    """message_filters' ApproximateTime policy over named inputs (see the module docstring).

    ``add(name, stamp_ns, message)`` returns the sets it completed, oldest first (usually none or one).
    Not thread-safe: callers serialise ``add`` (the grounding node holds a lock).
    """

    def __init__(
        self,
        inputs: Sequence[str],
        queue_size: int = 10,
        slop: int = to_nanoseconds(0.02),
        min_periods: Mapping[str, int] | None = None,
    ) -> None:
        if len(inputs) < 2 or len(set(inputs)) != len(inputs):
            raise ValueError(f"need at least two distinct inputs, got {list(inputs)}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 ns, got {slop}")
        unknown = set(min_periods or {}) - set(inputs)
        if unknown:
            raise ValueError(f"min_periods names unknown inputs {sorted(unknown)}; inputs: {list(inputs)}")
        self.inputs = tuple(inputs)
        self.queue_size = queue_size
        self.slop = slop
        self._min_period = [int((min_periods or {}).get(name, 0)) for name in self.inputs]
        self.dropped: Counter[str] = Counter()  # "late", "overflow", "unmatched"
        self.clear()

    def clear(self) -> None:
        """Forget every queued message and the last emitted stamps (e.g. on deactivate)."""
        self._queues: list[list[_Queued]] = [[] for _ in self.inputs]
        self._last_emitted: list[int | None] = [None for _ in self.inputs]
        self._has_dropped = [False for _ in self.inputs]

    def queued(self, name: str) -> list[int]:
        """Stamps waiting on one input, oldest first."""
        return [entry.stamp for entry in self._queues[self.inputs.index(name)]]

    # ------------------------------------------------------------------------------------- input
    def add(self, name: str, stamp: int, message: Any) -> list[MatchedSet]:
        try:
            i = self.inputs.index(name)
        except ValueError:
            raise ValueError(f"unknown input '{name}'; inputs: {list(self.inputs)}") from None
        last = self._last_emitted[i]
        if last is not None and stamp <= last:
            self.dropped["late"] += 1
            return []
        queue = self._queues[i]
        entry = _Queued(stamp, message)
        position = bisect.bisect_left(queue, entry)
        if position < len(queue) and queue[position].stamp == stamp:
            queue[position] = entry  # a re-publication of the same stamp: keep the newest content
        else:
            queue.insert(position, entry)
        if len(queue) > self.queue_size:
            queue.pop(0)
            self.dropped["overflow"] += 1
            self._has_dropped[i] = True
        emitted = []
        while (found := self._search()) is not None:
            emitted.append(self._emit(found))
        return emitted

    # ------------------------------------------------------------------------------------ search
    def _bounds(self, times: Sequence[int]) -> tuple[int, int]:
        """(start index, end index): the first earliest and the last latest, as message_filters picks."""
        start = min(range(len(times)), key=lambda k: (times[k], k))
        end = max(range(len(times)), key=lambda k: (times[k], k))
        return start, end

    def _search(self) -> _Candidate | None:
        """The optimal set if it can be proven now, else None (messages before any candidate that
        cannot be in a set within the slop are dropped on the way)."""
        heads = [0 for _ in self.inputs]
        best: _Candidate | None = None
        pivot = pivot_time = -1
        while True:
            if any(heads[k] >= len(q) for k, q in enumerate(self._queues)):
                return best if best is not None and self._proven_by_periods(best, heads, pivot_time) else None
            times = [q[heads[k]].stamp for k, q in enumerate(self._queues)]
            start_i, end_i = self._bounds(times)
            start, end = times[start_i], times[end_i]
            for k in range(len(self.inputs)):
                if k != end_i:  # no dropped message could have beaten these: end_i may pivot later
                    self._has_dropped[k] = False
            if best is None:
                if end - start > self.slop or self._has_dropped[end_i]:
                    self._queues[start_i].pop(0)  # heads are all 0 while there is no candidate
                    self.dropped["unmatched"] += 1
                    continue
                best = _Candidate(list(heads), start, end)
                pivot, pivot_time = end_i, end
            elif end - start < best.end - best.start:
                best = _Candidate(list(heads), start, end)
            heads[start_i] += 1
            if start_i == pivot or end - best.end >= pivot_time - best.start:
                return best

    def _proven_by_periods(self, best: _Candidate, heads: list[int], pivot_time: int) -> bool:
        """With some input exhausted: can the earliest possible next messages (the last one seen plus
        its minimum period, never before the pivot) still beat ``best``? No -> it is optimal."""
        heads = list(heads)
        while True:
            times = []
            for k, queue in enumerate(self._queues):
                if heads[k] < len(queue):
                    times.append(queue[heads[k]].stamp)
                else:
                    times.append(max(queue[heads[k] - 1].stamp + self._min_period[k], pivot_time))
            start_i, end_i = self._bounds(times)
            start, end = times[start_i], times[end_i]
            if end - best.end >= pivot_time - best.start:
                return True
            if end - best.end < start - best.start or heads[start_i] >= len(self._queues[start_i]):
                return False
            heads[start_i] += 1

    def _emit(self, best: _Candidate) -> MatchedSet:
        stamps, messages = {}, {}
        for k, name in enumerate(self.inputs):
            queue = self._queues[k]
            chosen = queue[best.heads[k]]
            self.dropped["unmatched"] += best.heads[k]  # older ones can never be in a later set
            del queue[: best.heads[k] + 1]
            stamps[name], messages[name] = chosen.stamp, chosen.message
            self._last_emitted[k] = chosen.stamp
        return MatchedSet(stamps, messages)


def nearest_set(sets: Sequence[MatchedSet], name: str, stamp: int, slop: int) -> MatchedSet | None:
    """The set whose ``name`` message is nearest ``stamp`` within ``slop`` (None when none is):
    pairs an image that came from elsewhere (a service request) with a recent synchronised set."""
    best = min(sets, key=lambda s: abs(s.stamps[name] - stamp), default=None)
    if best is None or abs(best.stamps[name] - stamp) > slop:
        return None
    return best
