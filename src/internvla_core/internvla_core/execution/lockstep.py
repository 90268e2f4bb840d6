"""Lock-step simulation (``tick_source`` state): one tick per new joint_states stamp.

Chunk and rtc modes tick on every new state stamp (the running chunk answers it). Ensemble mode waits for
the chunk of that very observation: the chunk can overtake its observation's joint_states (the image is
published first and the model can be fast), so both arrivals ask the gate. A chunk for the state stamp
now current ticks once for that stamp in every mode (chunk modes: the new chunk answers the stamp the
running one already answered), never twice. Chunk mode with ``execute_steps`` waits like ensemble mode
at the steps where its running chunk's commitment ends (``chunk_due`` of ``on_state``): the chunk that
takes over is then the one of that very observation, as in an evaluation that re-plans every
``execute_steps`` steps.
"""

from __future__ import annotations

STAMP_TOLERANCE = 1e-6  # [s] a chunk's observation stamp equals the state stamp


class LockstepGate:
    def __init__(self, mode: str) -> None:
        self.waits_for_chunk = mode == "ensemble"
        self.state_stamp: float | None = None  # the newest joint_states stamp: the tick's time
        self._chunk_stamp: float | None = None  # the observation stamp of the newest accepted chunk
        self._ticked_stamp: float | None = None

    def on_state(self, stamp: float, chunk_due: bool = False) -> bool:
        """A joint_states stamp arrived; True when the node must tick now. ``chunk_due``: the executor
        needs a new chunk for this step (chunk mode, ``ExecutorCore.chunk_due``): wait for it."""
        if stamp == self.state_stamp:
            return False
        self.state_stamp = stamp
        return True if not (self.waits_for_chunk or chunk_due) else self._answered()

    def on_chunk(self, observation_stamp: float) -> bool:
        """An accepted chunk of ``observation_stamp``; True when the node must tick now."""
        self._chunk_stamp = observation_stamp
        return self._answered()

    def _answered(self) -> bool:
        state, chunk = self.state_stamp, self._chunk_stamp
        if state is None or chunk is None or abs(chunk - state) >= STAMP_TOLERANCE:
            return False
        if self._ticked_stamp == state:
            return False
        self._ticked_stamp = state
        return True

    def tick_time(self, now: float) -> float:
        """The time a tick runs at: the state stamp it answers (``now`` before any state)."""
        return now if self.state_stamp is None else self.state_stamp
