"""ActionChunk fields into the core: stop/abort end the goal, malformed and unknown commands are refused."""

from __future__ import annotations

import numpy as np

from internvla_core.embodiments import get_embodiment
from internvla_core.execution.chunk_input import (
    ABORT,
    CHUNK,
    STOP,
    add_chunk_message,
    end_of_goal,
    release_estop,
)
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.status import StatusCode


def core() -> ExecutorCore:
    executor = ExecutorCore(get_embodiment("franka_real"), ExecutorConfig(mode="chunk", control_period=0.1))
    executor.reset(0.0)
    return executor


def test_stop_holds_and_abort_reports_aborted_with_the_policy_reason():
    assert end_of_goal(STOP, "cancelled") == ("stop: cancelled", StatusCode.HOLDING)
    assert end_of_goal(ABORT, "") == ("abort: goal ended", StatusCode.ABORTED)
    assert end_of_goal(CHUNK, "whatever") is None


def test_a_well_formed_chunk_is_stored_row_major():
    executor = core()
    rows = np.tile([0.01, 0, 0, 0, 0, 0, 1.0], (3, 1))
    assert add_chunk_message(executor, CHUNK, 3, 7, rows.ravel().tolist(), 0.0, 0.0) == ""
    assert executor.counters["chunks"] == 1


def test_unknown_commands_and_wrong_shapes_are_refused_and_counted():
    executor = core()
    assert "unknown command 7" in add_chunk_message(executor, 7, 1, 7, [0.0] * 7, 0.0, 0.0)
    assert "but 3 values" in add_chunk_message(executor, CHUNK, 1, 7, [0.0] * 3, 0.0, 0.0)
    assert add_chunk_message(executor, CHUNK, 0, 7, [], 0.0, 0.0)  # empty is no stop: malformed
    assert executor.counters["rejected_unknown_command"] == 1 and executor.counters["rejected_shape"] == 2
    assert executor.counters["chunks"] == 0


def test_an_estop_release_is_refused_while_the_input_is_true_and_then_holds_until_a_new_chunk():
    executor = core()
    assert release_estop(executor, input_active=False) == ("", "no e-stop was latched", False)
    executor.latch_estop()
    problem, message, released = release_estop(executor, input_active=True)
    assert problem == message and "still true" in problem and not released and executor.estop_latched
    problem, message, released = release_estop(executor, input_active=False)
    assert not problem and released and not executor.estop_latched
    assert message == "e-stop released: holding until a new chunk arrives"
    assert executor.stop_reason == "e-stop released: waiting for a new chunk"
