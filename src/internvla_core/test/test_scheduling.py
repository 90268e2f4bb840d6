"""Chunk streaming: stale rows skipped, seams cross-faded and rate-limited, exhaustion reported."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from internvla_core.scheduling import ChunkStreamer


def test_late_chunk_skips_the_rows_already_in_the_past():
    s = ChunkStreamer(blend_steps=0)
    skipped = s.add(np.arange(6.0)[:, None], obs_step=10, now_step=13)
    assert skipped == 3
    assert s.action(13)[0] == 3.0 and s.remaining(13) == 3


def test_seam_is_a_linear_cross_fade_over_blend_steps():
    s = ChunkStreamer(blend_steps=3)
    s.add(np.zeros((10, 1)), obs_step=0, now_step=0)
    assert s.action(0)[0] == 0.0 and s.action(1)[0] == 0.0
    s.add(np.ones((10, 1)), obs_step=1, now_step=2)  # computed at step 1, arrives at step 2
    assert [s.action(k)[0] for k in range(2, 7)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_discrete_dimensions_switch_at_once_instead_of_fading():
    s = ChunkStreamer(blend_steps=3, discrete_dims=(1,))
    s.add(np.tile([0.0, 1.0], (10, 1)), 0, 0)
    s.add(np.tile([1.0, 0.0], (10, 1)), 1, 1)
    np.testing.assert_allclose(s.action(1), [0.25, 0.0])


def test_exhausted_or_empty_buffer_returns_none_and_out_of_order_chunks_are_ignored():
    s = ChunkStreamer(blend_steps=1)
    assert s.action(0) is None and s.remaining(0) == 0
    s.add(np.ones((2, 1)), obs_step=5, now_step=5)
    assert s.add(np.zeros((9, 1)), obs_step=3, now_step=6) == 0  # older than the current chunk
    assert s.action(5)[0] == 1.0 and s.action(6)[0] == 1.0 and s.action(7) is None
    with pytest.raises(ValueError):
        s.add(np.zeros((0, 1)), 8, 8)


def test_rate_limit_joins_chunks_that_disagree_and_then_lets_the_new_chunk_through():
    s = ChunkStreamer(blend_steps=0, max_seam_change=0.1)
    s.add(np.zeros((10, 1)), 0, 0)
    s.action(0)
    s.add(np.full((10, 1), 0.35), 1, 1)
    values = [s.action(k)[0] for k in range(1, 7)]
    assert values == pytest.approx([0.1, 0.2, 0.3, 0.35, 0.35, 0.35])
    assert not s.catching_up


def test_after_the_buffer_ran_out_the_next_chunk_starts_without_rate_limit():
    s = ChunkStreamer(blend_steps=0, max_seam_change=0.1)
    s.add(np.zeros((1, 1)), 0, 0)
    s.action(0)
    assert s.action(1) is None  # exhausted: the executor holds, the arm stands
    s.add(np.ones((3, 1)), 2, 2)
    assert s.action(2)[0] == 1.0


@settings(max_examples=200, deadline=None)
@given(
    old=arrays(np.float64, (8, 3), elements=st.floats(-1, 1)),
    new=arrays(np.float64, (8, 3), elements=st.floats(-1, 1)),
    delay=st.integers(0, 5),
    blend=st.integers(0, 4),
    limit=st.floats(0.01, 0.5),
)
def test_no_seam_moves_the_output_more_than_the_limit_whatever_the_chunks(old, new, delay, blend, limit):
    s = ChunkStreamer(blend_steps=blend, max_seam_change=limit)
    s.add(old, obs_step=0, now_step=0)
    previous = s.action(0)
    for k in range(1, 2 + delay):  # the old chunk runs until the new one arrives
        previous = s.action(k)
    s.add(new, obs_step=1, now_step=2 + delay)  # its rows 0..delay are already past
    for k in range(2 + delay, 9):
        in_seam = s.catching_up
        if k - (2 + delay) < max(blend, 1):
            assert in_seam  # the first step after the switch and the whole blend window are the seam
        out = s.action(k)
        assert out is not None
        if in_seam:
            assert np.abs(out - previous).max() <= limit + 1e-9
        else:  # caught up: exactly the new chunk's own rows
            np.testing.assert_allclose(out, new[k - 1])
        previous = out


@settings(max_examples=150, deadline=None)
@given(
    first=st.floats(-1, 1),
    second=st.floats(-1, 1),
    delay=st.integers(0, 4),
    blend=st.integers(1, 4),
)
def test_cross_fade_splits_a_constant_gap_into_blend_plus_one_equal_parts(first, second, delay, blend):
    s = ChunkStreamer(blend_steps=blend)
    s.add(np.full((10, 1), first), 0, 0)
    s.add(np.full((10, 1), second), 1, 1 + delay)
    values = [first, *(s.action(k)[0] for k in range(1 + delay, 9))]
    assert np.abs(np.diff(values)).max() <= abs(second - first) / (blend + 1) + 1e-12


def test_execute_steps_keeps_the_running_chunk_until_that_many_rows_ran_then_the_newest_waiting_one_takes_over():
    s = ChunkStreamer(blend_steps=0, execute_steps=3)
    s.add(np.arange(10.0)[:, None], obs_step=0, now_step=0)
    out = [s.action(0)[0]]
    s.add(np.full((10, 1), 100.0), obs_step=1, now_step=1)  # arrives while committed: waits
    s.add(np.arange(200.0, 210.0)[:, None], obs_step=2, now_step=2)  # newer: replaces the waiting one
    s.add(np.full((10, 1), 300.0), obs_step=1, now_step=2)  # older than the waiting one: dropped
    out += [s.action(1)[0], s.action(2)[0]]
    assert out == [0.0, 1.0, 2.0]  # rows 0-2 of the running chunk, whatever arrived
    assert s.action(3)[0] == 201.0  # the chunk of step 2 takes over at step 3, its row for step 3
    assert s.switch_due(3) is False and s.switch_due(5) is True  # committed to it for steps 2..4


def test_execute_steps_ends_with_the_chunk_and_zero_switches_at_once():
    s = ChunkStreamer(blend_steps=0, execute_steps=8)
    s.add(np.zeros((2, 1)), obs_step=0, now_step=0)
    assert s.switch_due(0) is False and s.switch_due(2) is True  # a 2-row chunk cannot commit 8 steps
    s.add(np.ones((4, 1)), obs_step=2, now_step=2)  # the old one ran out: taken at once
    assert s.action(2)[0] == 1.0
    eager = ChunkStreamer(blend_steps=0)
    eager.add(np.zeros((5, 1)), 0, 0)
    eager.add(np.ones((5, 1)), 1, 1)
    assert eager.action(1)[0] == 1.0 and eager.switch_due(2)
    with pytest.raises(ValueError, match="execute_steps"):
        ChunkStreamer(execute_steps=-1)


def _gripper_chunk(values: list[float], x: float = 0.0) -> np.ndarray:
    """Rows [x, gripper]: the gripper dimension is 1."""
    return np.array([[x, g] for g in values])


def test_a_gripper_change_is_carried_out_along_the_chunk_that_made_it():
    from internvla_core.scheduling import GripperCommitment

    commit = GripperCommitment(steps=3, gripper_dim=1)
    opened = np.array([0.0, 1.0])
    assert commit.action(0, opened, None)[1] == 1.0  # the first decision: nothing to change from
    closing = (1, _gripper_chunk([0.0, 0.0, 0.0, 0.0, 0.0], x=7.0))  # newest chunk: close and hold
    out = commit.action(1, np.array([0.5, 0.2]), closing)  # the ensemble closes too: commit
    assert out.tolist() == [7.0, 0.0] and commit.commitments == 1
    reopen = np.array([0.0, 1.0])  # the ensemble wants to reopen at once: ignored while committed
    assert commit.action(2, reopen, None)[1] == 0.0 and commit.action(3, reopen, None)[1] == 0.0
    assert commit.action(4, reopen, (4, _gripper_chunk([1.0] * 4)))[1] == 1.0  # over: a new change
    assert commit.commitments == 2


def test_no_commitment_when_the_newest_chunk_disagrees_or_when_off():
    from internvla_core.scheduling import GripperCommitment

    commit = GripperCommitment(steps=3, gripper_dim=1)
    commit.action(0, np.array([0.0, 1.0]), None)
    still_open = (1, _gripper_chunk([1.0] * 5, x=9.0))  # older chunks drove the ensemble closed
    assert commit.action(1, np.array([0.0, 0.3]), still_open).tolist() == [0.0, 0.3]
    assert commit.commitments == 0 and not commit.active(2)
    off = GripperCommitment(steps=0, gripper_dim=1)
    off.action(0, np.array([0.0, 1.0]), None)
    assert off.action(1, np.array([0.0, 0.0]), (1, _gripper_chunk([0.0] * 5, x=9.0)))[0] == 0.0
    with pytest.raises(ValueError, match="gripper_commit_steps"):
        GripperCommitment(steps=-1, gripper_dim=1)
