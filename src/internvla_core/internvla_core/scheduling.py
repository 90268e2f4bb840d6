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

``execute_steps`` (the "action horizon" of Diffusion Policy and ACT, 0 = off) commits to a chunk: a newer
chunk replaces the running one only once at least that many of its rows have been executed (or it ran
out). A chunk that arrives earlier waits (the newest one waiting wins) and takes over at that step,
skipping its rows for the steps already past. A policy that re-plans every step from a picture alone
cannot tell the first still frame of a pause from the last one; a committed chunk carries it through
the pause into what follows (TRAINING.md, tenth round).
"""

from __future__ import annotations

import numpy as np


class ChunkStreamer:
    def __init__(
        self,
        blend_steps: int = 3,
        max_seam_change: float | np.ndarray | None = None,
        discrete_dims: tuple[int, ...] = (),
        execute_steps: int = 0,
    ) -> None:
        if blend_steps < 0:
            raise ValueError("blend_steps must be >= 0")
        if execute_steps < 0:
            raise ValueError("execute_steps must be >= 0 (0 = switch to each new chunk at once)")
        if max_seam_change is not None and np.any(~(np.asarray(max_seam_change, dtype=np.float64) > 0)):
            raise ValueError("max_seam_change must be positive (use inf to leave a dimension free)")
        self.blend_steps = blend_steps
        self.execute_steps = execute_steps
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
        self.pending: np.ndarray | None = None  # a newer chunk waiting for execute_steps rows to pass
        self.pending_start = 0

    def committed(self, step: int) -> bool:
        """True while the running chunk must go on at ``step``: fewer than ``execute_steps`` of its rows
        have been executed and it has a row for that step."""
        if self.current is None or self.execute_steps == 0:
            return False
        return (
            step - self.current_start < self.execute_steps
            and self._row(self.current, self.current_start, step) is not None
        )

    def switch_due(self, step: int) -> bool:
        """True when the action of ``step`` will come from a chunk newer than the running one (none is
        running, or its commitment ended): lock-step waits for the chunk of that observation."""
        return not self.committed(step)

    def add(self, chunk: np.ndarray, obs_step: int, now_step: int) -> int:
        """Take a chunk (row 0 = action for ``obs_step``); returns how many past rows it skips."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or len(chunk) == 0:
            raise ValueError(f"a chunk must be a non-empty T x D array, got shape {chunk.shape}")
        if self.current is not None and obs_step < self.current_start:
            return 0  # older than what we execute: ignore (out-of-order delivery)
        if self.committed(now_step):
            if self.pending is None or obs_step >= self.pending_start:
                self.pending, self.pending_start = chunk, int(obs_step)
            return 0
        return self._switch(chunk, int(obs_step), int(now_step))

    def _switch(self, chunk: np.ndarray, obs_step: int, now_step: int) -> int:
        self.pending = None
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
        if self.pending is not None and not self.committed(step):
            self._switch(self.pending, self.pending_start, step)
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


class GripperCommitment:
    """Ensemble mode: a change of the gripper decision is carried out along the chunk that made it.

    Re-planned every step from a picture alone, a policy cannot tell the first still frame after a grasp
    from the last one, and its demonstrations hold still there for several steps before the lift: it
    holds for ever, or lets go again a step after closing (TRAINING.md, eighth round). When the
    executed gripper decision (closed: the model's gripper value below 0.5, 1 = open) changes, and the
    newest chunk's row for that step makes the same change, the next ``steps`` actions are that chunk's
    rows (arm and gripper, no ensembling): the close, the hold and the start of the lift as one
    decision. Then ensembling resumes. ``steps`` 0 = off.
    """

    def __init__(self, steps: int, gripper_dim: int) -> None:
        if steps < 0:
            raise ValueError("gripper_commit_steps must be >= 0 (0 = off)")
        self.steps, self.gripper_dim = steps, gripper_dim
        self.reset()

    def reset(self) -> None:
        self.chunk: np.ndarray | None = None
        self.start = 0
        self.until = 0
        self.closed: bool | None = None  # the last executed gripper decision
        self.commitments = 0

    def active(self, step: int) -> bool:
        chunk = self.chunk
        return chunk is not None and step < self.until and 0 <= step - self.start < len(chunk)

    def action(
        self, step: int, ensembled: np.ndarray | None, newest: tuple[int, np.ndarray] | None
    ) -> np.ndarray | None:
        """The action for ``step``: the committed chunk's row while a commitment runs; else
        ``ensembled``, or the newest chunk's row where that starts a commitment. ``newest``: the newest
        stored chunk as (observation step, chunk)."""
        if self.active(step):
            out = self.chunk[step - self.start]
        else:
            self.chunk, out = None, ensembled
            if out is not None and self.steps > 0 and self.closed is not None:
                closed = bool(out[self.gripper_dim] < 0.5)
                row = _row_of(newest, step)
                if closed != self.closed and row is not None and bool(row[self.gripper_dim] < 0.5) == closed:
                    self.chunk, self.start, self.until = newest[1], newest[0], step + self.steps
                    self.commitments += 1
                    out = row
        if out is not None:
            self.closed = bool(out[self.gripper_dim] < 0.5)
        return out


def _row_of(chunk: tuple[int, np.ndarray] | None, step: int) -> np.ndarray | None:
    if chunk is None or not 0 <= step - chunk[0] < len(chunk[1]):
        return None
    return chunk[1][step - chunk[0]]
