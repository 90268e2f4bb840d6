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
