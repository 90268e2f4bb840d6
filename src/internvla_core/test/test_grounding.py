"""format_grounding_answer is the inverse of parse_grounding_text + to_source_pixels."""

from __future__ import annotations

import math

import pytest

from internvla_core.grounding import format_grounding_answer, parse_grounding_text, to_source_pixels

IMAGE = (224, 160)


def _round_trip(kind, value, model_size, decimals):
    text = format_grounding_answer(kind, value, "red block", IMAGE, model_size, decimals)
    boxes, points, traces = to_source_pixels(parse_grounding_text(text, kind), model_size or IMAGE, IMAGE)
    return text, boxes, points, traces


@pytest.mark.parametrize("model_size", [None, (448, 308), (112, 84)])
@pytest.mark.parametrize("decimals", [None, 0])
def test_box_point_and_trace_round_trip_through_the_parser(model_size, decimals):
    # rounding to integer model pixels moves a coordinate by at most half a model pixel
    tol = (
        1e-6
        if decimals is None
        else 0.5 * max(IMAGE[0] / (model_size or IMAGE)[0], IMAGE[1] / (model_size or IMAGE)[1]) + 1e-6
    )
    box = [12.3, 40.7, 90.2, 121.9]
    _, boxes, _, _ = _round_trip("box", box, model_size, decimals)
    assert len(boxes) == 1 and boxes[0].label == "red block"
    got = [boxes[0].x1, boxes[0].y1, boxes[0].x2, boxes[0].y2]
    assert all(abs(a - b) <= tol for a, b in zip(got, box)), (got, box)

    point = [101.4, 77.6]
    _, _, points, _ = _round_trip("point", point, model_size, decimals)
    assert len(points) == 1
    assert abs(points[0].u - point[0]) <= tol and abs(points[0].v - point[1]) <= tol

    trace = [[10.0, 150.2], [50.5, 120.1], [90.9, 80.3], [140.0, 40.4], [200.7, 20.0]]
    _, _, _, traces = _round_trip("trace", trace, model_size, decimals)
    assert len(traces) == 1 and len(traces[0].points) == len(trace)
    for (u, v), (eu, ev) in zip(traces[0].points, trace):
        assert abs(u - eu) <= tol and abs(v - ev) <= tol


def test_answers_are_qwen_style_json_and_clip_like_the_parser():
    text = format_grounding_answer("box", [-5.0, 3.0, 300.0, 50.0], "plate", IMAGE)
    assert text == '[{"bbox_2d": [0, 3, 224, 50], "label": "plate"}]'
    # corners come out ordered, as the parser orders them
    assert format_grounding_answer("box", [30, 40, 10, 20], "x", IMAGE).startswith(
        '[{"bbox_2d": [10, 20, 30, 40]'
    )


def test_out_of_view_gives_an_answer_without_geometry_and_bad_input_is_refused():
    text = format_grounding_answer("box", [math.nan] * 4, "red block", IMAGE)
    assert text == "[]"
    assert not parse_grounding_text(text, "box").boxes
    with pytest.raises(ValueError):
        format_grounding_answer("polygon", [1, 2], "x", IMAGE)
    with pytest.raises(ValueError):
        format_grounding_answer("box", [1, 2, 3], "x", IMAGE)
