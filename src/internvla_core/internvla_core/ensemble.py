"""Adaptive action ensembling, as upstream's evaluation clients use it (model spec section 5).

Every control step the model is queried again; the last H chunks are kept; for the current step each
chunk contributes its row for "now" (the newest chunk row 0, the one before row 1, ...), weighted by
exp(alpha * cos(row_k, newest row)), normalised; the weighted mean is executed. alpha = 0.1 upstream;
H is per embodiment (WidowX 7, Google robot 2, LIBERO 3). The 1e-7 in the cosine denominator is kept.

Beyond upstream: when inference is slower than the control period, a chunk reaches the executor a few
steps after its observation. ``AdaptiveEnsembler.ensemble_action(chunk, age)`` takes that age (steps
between the chunk's observation and now) so rows are aligned with time rather than with arrival order.
``TimedEnsembler`` (used by the executor) stores chunks by observation step instead, so ticks without
a new chunk and chunks arriving out of order are handled too: ``action(step)`` reads the row of each
stored chunk for that step.
"""

from __future__ import annotations

from collections import deque

import numpy as np


def ensemble_rows(rows: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Weighted mean of candidate actions [K, D] whose LAST row is the newest prediction."""
    ref = rows[-1]
    with np.errstate(all="ignore"):  # absurd magnitudes give inf/NaN here; the executor refuses those
        cos = (rows @ ref) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(ref) + 1e-7)
        weights = np.exp(alpha * cos)
        weights /= weights.sum()
        return (weights[:, None] * rows).sum(axis=0)


class AdaptiveEnsembler:
    """Upstream's ensembler: ``ensemble_action(chunk)`` once per control step with a fresh chunk.

    ``age``: how many control steps ago the chunk's observation was taken (0 = this step, upstream's
    case). Each stored chunk contributes its row for the current step: the row index grows by one per
    call, starting at the chunk's age. A chunk too short for the current step falls back to its last
    row (upstream's chunks are always longer than the horizon, so this never happens there).
    """

    def __init__(self, horizon: int, alpha: float = 0.1) -> None:
        if horizon < 1:
            raise ValueError("ensemble horizon must be >= 1")
        self.horizon = horizon
        self.alpha = alpha
        self.history: deque[tuple[np.ndarray, int]] = deque(maxlen=horizon)

    def reset(self) -> None:
        self.history.clear()

    def ensemble_action(self, chunk: np.ndarray, age: int = 0) -> np.ndarray:
        if age < 0:
            raise ValueError("a chunk cannot come from the future (age < 0)")
        self.history = deque(((c, row + 1) for c, row in self.history), maxlen=self.horizon)
        self.history.append((np.asarray(chunk, dtype=np.float64), int(age)))
        rows = np.stack([c[min(row, len(c) - 1)] for c, row in self.history])
        return ensemble_rows(rows, self.alpha)


class TimedEnsembler:
    """Ensembling aligned to control steps: chunks are tagged with the step of their observation.

    ``add(chunk, obs_step)`` stores a chunk whose row 0 is the action for ``obs_step``; the newest
    ``horizon`` chunks (by observation step) are kept, as upstream keeps the last H chunks.
    ``action(step)`` ensembles, over those chunks, each one's row for ``step`` (chunks that do not
    cover ``step`` are left out). Returns None when no chunk covers ``step``. With one fresh chunk per
    step (lock-step) it equals ``AdaptiveEnsembler``; with inference slower than the control period,
    ticks between chunks read further rows of the same chunks, so the arm keeps moving on the plan.
    """

    def __init__(self, horizon: int, alpha: float = 0.1) -> None:
        if horizon < 1:
            raise ValueError("ensemble horizon must be >= 1")
        self.horizon = horizon
        self.alpha = alpha
        self.chunks: list[tuple[int, np.ndarray]] = []

    def reset(self) -> None:
        self.chunks.clear()

    def add(self, chunk: np.ndarray, obs_step: int) -> None:
        self.chunks.append((int(obs_step), np.asarray(chunk, dtype=np.float64)))
        self.chunks.sort(key=lambda item: item[0])  # stable: equal steps keep arrival order
        self.chunks = self.chunks[-self.horizon :]

    def newest_step(self) -> int | None:
        return self.chunks[-1][0] if self.chunks else None

    def newest(self) -> tuple[int, np.ndarray] | None:
        """The newest stored chunk as (observation step, chunk), or None."""
        return self.chunks[-1] if self.chunks else None

    def action(self, step: int) -> np.ndarray | None:
        rows = [c[step - s] for s, c in self.chunks if 0 <= step - s < len(c)]
        if not rows:
            return None
        return ensemble_rows(np.stack(rows), self.alpha)
