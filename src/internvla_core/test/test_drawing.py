"""The debug image draws each grounded item at its source-pixel position."""

import numpy as np

from internvla_core.drawing import draw_grounding, label_colour
from internvla_core.grounding import GroundedBox, GroundedPoint, GroundedTrace, GroundingResult


def test_boxes_points_and_traces_are_drawn_where_they_are_and_the_source_is_untouched():
    rgb = np.zeros((120, 200, 3), dtype=np.uint8)
    result = GroundingResult(
        instruction="put the cup on the plate",
        kinds=("box", "point", "trace"),
        boxes=[GroundedBox("cup", 20, 30, 80, 90)],
        points=[GroundedPoint("plate", 150, 60)],
        traces=[GroundedTrace("path", [(100.0, 100.0), (180.0, 20.0)])],
        image_size=(200, 120),
    )
    out = draw_grounding(rgb, result)
    assert rgb.sum() == 0 and out.shape == rgb.shape and out.dtype == np.uint8
    assert tuple(out[60, 20]) == label_colour("cup")  # left edge of the box
    assert tuple(out[60, 150]) == label_colour("plate")  # point centre
    assert tuple(out[60, 140]) == label_colour("path")  # on the trace line (x=140, y=60)
    assert out[60, 50].sum() == 0  # box interior stays clear


def test_an_empty_result_is_captioned_not_silent():
    out = draw_grounding(np.zeros((100, 300, 3), np.uint8), GroundingResult(instruction="x", kinds=("box",)))
    assert out[85:, :150].sum() > 0
