"""Lock-step gate: one tick per state stamp; ensemble mode waits for the chunk of that observation."""

from __future__ import annotations

from internvla_core.execution.lockstep import LockstepGate


def test_chunk_mode_ticks_once_per_new_state_stamp():
    gate = LockstepGate("chunk")
    assert gate.on_state(50.0) and gate.on_state(50.1)
    assert not gate.on_state(50.1)  # the same stamp again: no new tick
    assert gate.tick_time(99.0) == 50.1


def test_ensemble_waits_for_the_chunk_of_the_state_stamp_whichever_arrives_first():
    gate = LockstepGate("ensemble")
    assert not gate.on_state(100.0)  # no chunk for it yet
    assert not gate.on_chunk(99.0)  # a chunk of another observation
    assert gate.on_chunk(100.0)  # its chunk: tick
    assert not gate.on_chunk(100.0) and not gate.on_state(100.0)  # never twice for one stamp
    assert gate.on_chunk(101.0) is False and gate.on_state(101.0)  # the chunk overtook its state


def test_a_chunk_for_the_stamp_just_ticked_in_chunk_mode_ticks_once_more_then_never():
    gate = LockstepGate("chunk")
    assert gate.on_state(7.0)
    assert gate.on_chunk(7.0)
    assert not gate.on_chunk(7.0)


def test_before_any_state_the_tick_time_is_now():
    assert LockstepGate("chunk").tick_time(3.5) == 3.5


def test_chunk_mode_waits_for_the_chunk_of_the_state_stamp_only_where_the_executor_needs_one():
    gate = LockstepGate("chunk")
    assert gate.on_state(1.0, chunk_due=False)  # the running chunk answers at once
    assert not gate.on_state(1.1, chunk_due=True)  # its commitment ended: wait for this observation's
    assert not gate.on_chunk(1.0)  # a late chunk of an older observation does not answer it
    assert gate.on_chunk(1.1) and not gate.on_chunk(1.1)  # its chunk: tick once
    assert gate.on_state(1.2, chunk_due=False)
