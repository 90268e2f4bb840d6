"""Chunk streaming for the executor's ``chunk`` mode (slow models, remote GPUs).

A chunk computed from the observation of step ``s`` holds the actions for steps s, s+1, ... . When it
arrives at step ``k > s`` (inference latency), rows for steps < k are already in the past and are
skipped. At the seam between the chunk being executed and the new one, the next ``blend_steps``
actions are a linear cross-fade: at the i-th step after the switch (i = 1..blend_steps) the action is
(1 - w)·old + w·new with w = i / (blend_steps + 1), so neither a sudden model change nor a latency jump
shows up as a jerk. ``discrete_dims`` (the gripper: a 0/1 decision) are not blended: the new chunk's
value applies at once. Optionally (``max_seam_change``) the change between consecutive emitted actions is
also rate-limited per dimension after every switch, through the blend window and until the output has
caught up with the new chunk:
then no seam, whatever the two chunks, moves the output by more than that limit per step. Inside one
chunk the model's own row-to-row changes pass unchanged. When the buffer runs out (no fresh chunk),
``action`` returns None and the executor holds (the watchdog decides how long that is allowed); the
next chunk then starts without a rate limit (the arm was standing still, there is no motion to join).

The executor's ``rtc`` mode uses this streamer with ``blend_steps=0`` and no rate limit: with real-time
chunking (``internvla_core.rtc``) the new chunk's rows for the steps executed while it was computed are
the executed actions, and its next rows continue them, so the seam needs no cross-fade.
"""

from __future__ import annotations

import numpy as np


class ChunkStreamer:
    def __init__(
        self,
        blend_steps: int = 3,
        max_seam_change: float | np.ndarray | None = None,
        discrete_dims: tuple[int, ...] = (),
    ) -> None:
        if blend_steps < 0:
            raise ValueError("blend_steps must be >= 0")
        if max_seam_change is not None and np.any(~(np.asarray(max_seam_change, dtype=np.float64) > 0)):
            raise ValueError("max_seam_change must be positive (use inf to leave a dimension free)")
        self.blend_steps = blend_steps
        self.discrete_dims = list(discrete_dims)
        self.max_seam_change = None if max_seam_change is None else np.asarray(max_seam_change, float)
        self.reset()

    def reset(self) -> None:
        self.current: np.ndarray | None = None
        self.current_start = 0
        self.previous: np.ndarray | None = None
        self.previous_start = 0
        self.switch_step = 0
        self.last_emitted: np.ndarray | None = None
        self.last_step: int | None = None
        self.catching_up = False

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
        self.catching_up = True
        return max(0, now_step - obs_step)

    @staticmethod
    def _row(chunk: np.ndarray | None, start: int, step: int) -> np.ndarray | None:
        if chunk is None or not 0 <= step - start < len(chunk):
            return None
        return chunk[step - start]

    def _blended(self, step: int) -> np.ndarray | None:
        new = self._row(self.current, self.current_start, step)
        if new is None:
            return None
        old = self._row(self.previous, self.previous_start, step)
        i = step - self.switch_step + 1
        if old is None or self.blend_steps == 0 or not 1 <= i <= self.blend_steps:
            return new
        w = i / (self.blend_steps + 1)
        blended = (1.0 - w) * old + w * new
        blended[self.discrete_dims] = new[self.discrete_dims]
        return blended

    def action(self, step: int) -> np.ndarray | None:
        """The action for control ``step`` (call once per step, steps increasing), or None."""
        out = self._blended(step)
        follows = self.last_step is not None and step == self.last_step + 1
        if out is None:
            self.last_emitted, self.last_step, self.catching_up = None, None, False
            return None
        if (
            self.max_seam_change is not None
            and self.catching_up
            and follows
            and self.last_emitted is not None
        ):
            limited = self.last_emitted + np.clip(
                out - self.last_emitted, -self.max_seam_change, self.max_seam_change
            )
            past_blend = step - self.switch_step + 1 > self.blend_steps
            if past_blend and np.allclose(limited, out, rtol=0.0, atol=1e-12):
                self.catching_up = False  # caught up with the new chunk: its own rows from now on
            out = limited
        elif self.catching_up and step - self.switch_step + 1 > self.blend_steps:
            self.catching_up = False
        self.last_emitted, self.last_step = out, step
        return out

    def remaining(self, step: int) -> int:
        if self.current is None:
            return 0
        return max(0, self.current_start + len(self.current) - step)
