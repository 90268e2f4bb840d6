"""The executor's inputs into the core: an ActionChunk's fields (a chunk, a stop, a refusal), an e-stop release."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..executor_core import ExecutorCore
from ..input_checks import StampLike
from ..status import StatusCode

CHUNK, STOP, ABORT = 0, 1, 2  # ActionChunk.command (a test checks the message's constants)


def end_of_goal(command: int, reason: str) -> tuple[str, StatusCode] | None:
    """(hold reason, status) when ``command`` ends the goal (the policy stopped or aborted it), else None."""
    if command not in (STOP, ABORT):
        return None
    aborted = command == ABORT
    return f"{'abort' if aborted else 'stop'}: {reason or 'goal ended'}", (
        StatusCode.ABORTED if aborted else StatusCode.HOLDING
    )


def add_chunk_message(
    core: ExecutorCore,
    command: int,
    rows: int,
    cols: int,
    data: Sequence[float],
    observation: StampLike,
    now: float,
    header: StampLike | None = None,
) -> str:
    """Store the chunk (rows x cols values, row-major); '' or why it was refused (counted by the core)."""
    if command != CHUNK:
        return core.reject_chunk("unknown_command", f"unknown command {command}")
    if rows * cols != len(data):
        return core.reject_chunk("shape", f"rows x cols = {rows} x {cols} but {len(data)} values")
    chunk = np.asarray(data, dtype=np.float64).reshape(rows, cols)
    return core.add_chunk(chunk, observation, now, header)


def release_estop(core: ExecutorCore, input_active: bool) -> tuple[str, str, bool]:
    """(problem, message, released): the answer to ~/release_estop. Refused while the estop input is
    still true; after a release the executor holds until a new chunk arrives."""
    latched = core.estop_latched
    problem = core.release_estop(input_active=input_active)
    if problem:
        return problem, problem, False
    if latched:
        return "", "e-stop released: holding until a new chunk arrives", True
    return "", "no e-stop was latched", False
