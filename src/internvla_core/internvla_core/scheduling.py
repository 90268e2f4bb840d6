"""Chunk streaming for the executor's ``chunk`` mode (slow models, remote GPUs).

A chunk computed from the observation of step ``s`` holds the actions for steps s, s+1, ... . When it
arrives at step ``k > s`` (inference latency), rows for steps < k are already in the past and are
skipped. At the seam between the chunk being executed and the new one, the next ``blend_steps``
actions are a linear cross-fade: at the i-th step after the switch (i = 1..blend_steps) the action is
(1 - w)·old + w·new with w = i / (blend_steps + 1), so neither a sudden model change nor a latency jump
shows up as a jerk. When the buffer runs out (no fresh chunk), ``action`` returns None and the executor
holds (the watchdog decides how long that is allowed).
"""

from __future__ import annotations

import numpy as np


class ChunkStreamer:
    def __init__(self, blend_steps: int = 3) -> None:
        if blend_steps < 0:
            raise ValueError("blend_steps must be >= 0")
        self.blend_steps = blend_steps
        self.reset()

    def reset(self) -> None:
        self.current: np.ndarray | None = None
        self.current_start = 0
        self.previous: np.ndarray | None = None
        self.previous_start = 0
        self.switch_step = 0

    def add(self, chunk: np.ndarray, obs_step: int, now_step: int) -> int:
        """Take a chunk (row 0 = action for ``obs_step``); returns how many past rows it skips."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or len(chunk) == 0:
            raise ValueError(f"a chunk must be a non-empty T x D array, got shape {chunk.shape}")
        if self.current is not None and obs_step < self.current_start:
            return 0  # older than what we execute: ignore (out-of-order delivery)
        self.previous, self.previous_start = self.current, self.current_start
        self.current, self.current_start = chunk, int(obs_step)
        self.switch_step = int(now_step)
        return max(0, now_step - obs_step)

    @staticmethod
    def _row(chunk: np.ndarray | None, start: int, step: int) -> np.ndarray | None:
        if chunk is None or not 0 <= step - start < len(chunk):
            return None
        return chunk[step - start]

    def action(self, step: int) -> np.ndarray | None:
        new = self._row(self.current, self.current_start, step)
        if new is None:
            return None
        old = self._row(self.previous, self.previous_start, step)
        i = step - self.switch_step + 1
        if old is None or self.blend_steps == 0 or not 1 <= i <= self.blend_steps:
            return new
        w = i / (self.blend_steps + 1)
        return (1.0 - w) * old + w * new

    def remaining(self, step: int) -> int:
        if self.current is None:
            return 0
        return max(0, self.current_start + len(self.current) - step)
