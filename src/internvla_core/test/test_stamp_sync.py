"""ApproximateTimeSync pairs image, depth and camera_info by stamp as message_filters' ApproximateTime does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from internvla_core.stamp_sync import ApproximateTimeSync, MatchedSet, nearest_set, to_nanoseconds

MS = 1_000_000
INPUTS = ("image", "depth", "info")


def sync(**kwargs) -> ApproximateTimeSync:
    kwargs.setdefault("slop", 20 * MS)
    return ApproximateTimeSync(INPUTS, **kwargs)


def feed(s: ApproximateTimeSync, *arrivals: tuple[str, int]) -> list[MatchedSet]:
    """Add (input, stamp in ms) in arrival order; the message is 'input@ms' so sets read easily."""
    out = []
    for name, ms in arrivals:
        out += s.add(name, ms * MS, f"{name}@{ms}")
    return out


def stamps_ms(matched: MatchedSet) -> tuple[int, ...]:
    return tuple(matched.stamps[name] // MS for name in INPUTS)


def test_identical_stamps_are_emitted_as_soon_as_the_last_input_arrives():
    s = sync()
    assert feed(s, ("image", 100), ("depth", 100)) == []
    (matched,) = feed(s, ("info", 100))
    assert dict(matched.messages) == {"image": "image@100", "depth": "depth@100", "info": "info@100"}
    assert matched.span == 0


def test_the_depth_with_the_matching_stamp_is_paired_even_when_a_newer_one_arrived_first():
    s = sync()
    sets = feed(s, ("depth", 100), ("depth", 200), ("info", 100), ("info", 200), ("image", 100))
    assert [stamps_ms(m) for m in sets] == [(100, 100, 100)]
    assert s.queued("depth") == [200 * MS]  # the newer depth waits for its own image


def test_out_of_order_arrivals_are_sorted_into_their_queue_and_still_paired_by_stamp():
    s = sync()
    sets = feed(s, ("depth", 200), ("image", 200), ("depth", 100), ("image", 100), ("info", 100))
    sets += feed(s, ("info", 200))
    assert [stamps_ms(m) for m in sets] == [(100, 100, 100), (200, 200, 200)]


def test_a_stamp_whose_partners_were_given_up_before_it_arrived_finds_no_set():
    """As in message_filters: heads that cannot pair with the others' heads are dropped at once."""
    s = sync()
    feed(s, ("image", 200), ("depth", 100), ("info", 100))  # depth@100, info@100: no image near them
    assert s.queued("depth") == [] and s.dropped["unmatched"] == 1  # info@100 waits: depth is empty
    assert feed(s, ("image", 100)) == []


def test_a_late_message_older_than_the_last_set_of_its_input_is_dropped_and_counted():
    s = sync()
    assert len(feed(s, ("image", 200), ("depth", 200), ("info", 200))) == 1
    assert feed(s, ("depth", 150), ("depth", 200)) == []  # older, and a re-publication of the set's stamp
    assert s.queued("depth") == [] and s.dropped["late"] == 2


def test_with_an_input_missing_nothing_is_emitted_and_the_queues_stay_bounded():
    s = sync(queue_size=3)
    sets = feed(s, *[(name, ms) for ms in range(100, 1100, 100) for name in ("image", "depth")])
    assert sets == []
    assert s.queued("image") == [800 * MS, 900 * MS, 1000 * MS]
    assert s.dropped["overflow"] == 14
    (matched,) = feed(s, ("info", 1000))
    assert stamps_ms(matched) == (1000, 1000, 1000)
    assert s.queued("image") == [] and s.queued("depth") == []  # older ones dropped on emission


@pytest.mark.parametrize(("gap_ns", "paired"), [(20 * MS, True), (20 * MS + 1, False)])
def test_a_set_may_span_exactly_the_slop_and_not_one_nanosecond_more(gap_ns, paired):
    s = sync()
    s.add("image", 1000 * MS, "image")
    s.add("depth", 1000 * MS + gap_ns, "depth")
    s.add("info", 1000 * MS, "info")
    # the next frame, 100 ms later, proves the first set optimal (or that there is none)
    sets = [
        *s.add("image", 1100 * MS, "i2"),
        *s.add("depth", 1100 * MS, "d2"),
        *s.add("info", 1100 * MS, "n2"),
    ]
    first = sets[0]
    if paired:
        assert first.messages["depth"] == "depth" and first.span == gap_ns
    else:
        assert first.messages["image"] == "i2"  # the first image found no depth within the slop
        assert s.dropped["unmatched"] >= 1


def test_near_stamps_wait_for_the_next_message_then_the_smallest_span_wins():
    s = sync()
    assert feed(s, ("image", 100), ("info", 100), ("depth", 95)) == []  # is a better depth coming?
    assert feed(s, ("depth", 99)) == []  # better: span 1 ms; still not proven
    sets = feed(s, ("depth", 130))  # past the pivot: no later depth can do better than 99
    assert [stamps_ms(m) for m in sets] == [(100, 99, 100)]
    assert s.dropped["unmatched"] == 1  # depth@95, older than the set


def test_minimum_periods_prove_a_set_optimal_without_waiting_for_the_next_frame():
    periods = {name: 33 * MS for name in INPUTS}  # a 30 Hz camera: no two frames closer than 33 ms
    s = sync(min_periods=periods)
    assert feed(s, ("image", 100), ("info", 100)) == []
    (matched,) = feed(s, ("depth", 102))
    assert stamps_ms(matched) == (100, 102, 100)


def test_an_input_that_overflowed_cannot_be_the_pivot_until_the_others_moved_past_it():
    s = sync(queue_size=2)
    feed(s, ("depth", 100), ("depth", 200), ("depth", 300))  # depth@100 dropped: depth may not pivot
    assert s.dropped["overflow"] == 1
    sets = feed(s, ("image", 100), ("info", 100))
    # the set {image@100, info@100, depth@200} would span 100 ms > slop anyway; the image and info
    # at 100 are dropped as unmatched, the next frame pairs normally
    sets += feed(s, ("image", 200), ("info", 200))
    assert [stamps_ms(m) for m in sets] == [(200, 200, 200)]


def test_a_republished_stamp_replaces_the_queued_message():
    s = sync()
    s.add("image", 100 * MS, "first")
    s.add("image", 100 * MS, "second")
    assert s.queued("image") == [100 * MS]
    s.add("depth", 100 * MS, "d")
    (matched,) = s.add("info", 100 * MS, "i")
    assert matched.messages["image"] == "second"


def test_clear_forgets_queues_and_the_late_rule():
    s = sync()
    feed(s, ("image", 100), ("depth", 100), ("info", 100))
    s.add("image", 200 * MS, "x")
    s.clear()
    assert s.queued("image") == []
    assert len(feed(s, ("image", 50), ("depth", 50), ("info", 50))) == 1  # not late any more


def test_bad_configuration_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="two distinct inputs"):
        ApproximateTimeSync(["image"])
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSync(INPUTS, queue_size=0)
    with pytest.raises(ValueError, match="unknown inputs"):
        ApproximateTimeSync(INPUTS, min_periods={"imag": 1})
    with pytest.raises(ValueError, match="unknown input 'imag'"):
        sync().add("imag", 0, None)


def test_nearest_set_pairs_a_foreign_image_with_a_recent_set_within_the_slop():
    sets = [MatchedSet({"image": t * MS}, {"image": t}) for t in (100, 200, 300)]
    assert nearest_set(sets, "image", 195 * MS, 20 * MS).messages["image"] == 200
    assert nearest_set(sets, "image", 250 * MS, 20 * MS) is None
    assert nearest_set([], "image", 0, 20 * MS) is None
    assert to_nanoseconds(0.02) == 20 * MS


# every input at 10 Hz with up to 4 ms of jitter, shuffled within a few messages, some lost
@settings(max_examples=200, deadline=None)
@given(
    jitter=st.lists(st.integers(-4, 4), min_size=90, max_size=90),
    lost=st.sets(st.integers(0, 89), max_size=15),
    swaps=st.lists(st.integers(0, 88), max_size=20),
)
def test_random_streams_give_sets_within_the_slop_in_stamp_order_each_message_used_once(jitter, lost, swaps):
    queue_size = 5
    s = sync(queue_size=queue_size, slop=10 * MS)
    arrivals = [(INPUTS[k % 3], (k // 3) * 100 * MS + jitter[k] * MS, k) for k in range(90) if k not in lost]
    for i in swaps:  # neighbours arrive out of order
        if i + 1 < len(arrivals):
            arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    sets = []
    for name, stamp, k in arrivals:
        sets += s.add(name, stamp, k)
    used = [k for m in sets for k in m.messages.values()]
    assert len(used) == len(set(used))
    for m in sets:
        assert m.span <= 10 * MS
        assert len({v // 3 for v in m.messages.values()}) == 1  # all from the same frame
    for name in INPUTS:
        order = [m.stamps[name] for m in sets]
        assert order == sorted(order) and len(order) == len(set(order))
    complete = [f for f in range(30) if not {3 * f, 3 * f + 1, 3 * f + 2} & lost]
    # In order, and no input silent for queue_size - 1 frames in a row: every complete frame but the last
    # pairs. A longer silence overflows the other inputs' queues first (the next test shows it).
    if not swaps and len(complete) >= 2 and _longest_silence(lost) < queue_size - 1:
        assert {m.messages["image"] // 3 for m in sets} >= set(complete[:-1])


def _longest_silence(lost: set[int]) -> int:
    """The most consecutive frames (of 30) one input lost; message k is input k % 3 of frame k // 3."""
    longest = 0
    for i in range(3):
        run = 0
        for frame in range(30):
            run = run + 1 if 3 * frame + i in lost else 0
            longest = max(longest, run)
    return longest


@pytest.mark.parametrize("queue_size, paired", [(5, False), (6, True)])
def test_an_input_silent_longer_than_the_queue_drops_a_complete_frame_by_overflow(queue_size, paired):
    # frame 1 is complete (its 'info' stamped 1 ms early), then 'info' misses frames 2-5: the algorithm
    # needs an 'info' after frame 1's set before it may emit it, and by then the 'image' and 'depth'
    # queues have overflowed (as message_filters' ApproximateTime does with the same queue_size)
    lost = {0, 1, 8, 11, 14, 17}
    s = sync(queue_size=queue_size, slop=10 * MS)
    sets = []
    for k in range(30):
        if k not in lost:
            sets += s.add(INPUTS[k % 3], (k // 3) * 100 * MS - (MS if k == 5 else 0), k)
    frames = {m.messages["image"] // 3 for m in sets}
    assert (1 in frames) is paired and {6, 7, 8} <= frames
