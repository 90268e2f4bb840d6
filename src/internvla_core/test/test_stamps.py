"""Stamp splitting keeps the carry: sums of control periods land on the right second."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from internvla_core.stamps import join_seconds, split_seconds


def test_a_value_just_below_a_whole_second_rounds_up_to_it():
    t = sum([0.1] * 30)  # 2.9999999999999996
    assert split_seconds(t) == (3, 0)
    assert split_seconds(2.9999999997) == (3, 0)


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0.0, (0, 0)), (1.5, (1, 500_000_000)), (0.1, (0, 100_000_000))]
)
def test_exact_values(seconds, expected):
    assert split_seconds(seconds) == expected


def test_negative_values_keep_nanoseconds_in_range():
    assert split_seconds(-0.25) == (-1, 750_000_000)


@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_round_trip_within_a_nanosecond_and_nanosec_in_range(seconds):
    sec, nanosec = split_seconds(seconds)
    assert 0 <= nanosec < 1_000_000_000
    assert abs(join_seconds(sec, nanosec) - seconds) <= 1e-9 + 1e-15 * seconds


def test_control_steps_give_strictly_increasing_stamps():
    t, previous = 0.0, (-1, 0)
    for _ in range(5000):
        t += 0.1
        stamp = split_seconds(t)
        assert stamp > previous
        previous = stamp
