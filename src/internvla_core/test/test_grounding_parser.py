"""Grounding answer parsing and rescaling to source-image pixels (pure, no model)."""

from __future__ import annotations

import sys

import pytest

from internvla_core.grounding import (
    GROUNDING_PROMPTS,
    build_grounding_result,
    grounding_prompt,
    parse_grounding_text,
)


def test_module_does_not_import_torch():
    # grounding is imported by light-weight nodes; it must stay free of torch. A fresh interpreter
    # proves it without reloading the module under the other tests (which would fork its classes).
    import subprocess

    code = "import sys, internvla_core.grounding; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_qwen_json_in_a_fence_with_two_objects():
    text = '```json\n[\n\t{"bbox_2d": [10, 20, 110, 220], "label": "apple"},\n\t{"bbox_2d": [5, 6, 7, 8], "label": "cup"}\n]\n```'
    parsed = parse_grounding_text(text, "box")
    assert parsed.boxes == [("apple", [10.0, 20.0, 110.0, 220.0]), ("cup", [5.0, 6.0, 7.0, 8.0])]


def test_single_object_and_json_embedded_in_prose():
    parsed = parse_grounding_text('Sure! {"bbox_2d": [1, 2, 3, 4], "label": "can"} is the can.', "box")
    assert parsed.boxes == [("can", [1.0, 2.0, 3.0, 4.0])]


def test_bare_coordinate_lists_take_the_default_label():
    parsed = parse_grounding_text("The apple is at [12, 30, 50, 70] and [1.5, 2, 3, 4].", "box", "apple")
    assert parsed.boxes == [("apple", [12.0, 30.0, 50.0, 70.0]), ("apple", [1.5, 2.0, 3.0, 4.0])]


def test_truncated_json_keeps_the_complete_objects():
    text = '[{"bbox_2d": [1, 2, 30, 40], "label": "a"}, {"bbox_2d": [5, 6, 7'
    parsed = parse_grounding_text(text, "box")
    assert parsed.boxes == [("a", [1.0, 2.0, 30.0, 40.0])]


def test_points_and_traces():
    p = parse_grounding_text('[{"point_2d": [100, 50], "label": "handle"}]', "point")
    assert p.points == [("handle", [100.0, 50.0])]
    t = parse_grounding_text('[{"trace": [[0, 0], [10, 5], [20, 10]], "label": "path"}]', "trace")
    assert t.traces == [("path", [(0.0, 0.0), (10.0, 5.0), (20.0, 10.0)])]
    bare = parse_grounding_text("go (1, 2) then (3, 4) then (5, 6)", "trace", "x")
    assert bare.traces == [("x", [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)])]


@pytest.mark.parametrize(
    "garbage", ["", "   ", "I cannot see that.", "[1, 2", '{"bbox_2d": "nope"}', "\ufffd\ufffd key\n\ufffd"]
)
def test_garbage_gives_empty_result_with_error_and_raw_text(garbage):
    result = build_grounding_result("the apple", ("box",), {"box": garbage}, (640, 480), (644, 476))
    assert result.boxes == [] and result.empty
    assert result.error is not None and "no box found" in result.error
    assert result.raw_text == {"box": garbage}


def test_rescale_from_model_input_to_source_pixels_on_a_non_square_image():
    # source 640x480 resized by the processor to 644x476 (multiples of 28)
    result = build_grounding_result(
        "cup",
        ("box", "point"),
        {"box": '[{"bbox_2d": [322, 238, 644, 476], "label": "cup"}]', "point": '[{"point_2d": [161, 119]}]'},
        (640, 480),
        (644, 476),
    )
    assert result.error is None
    box = result.boxes[0]
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((320.0, 240.0, 640.0, 480.0))
    pt = result.points[0]
    assert (pt.u, pt.v) == pytest.approx((160.0, 120.0))
    assert pt.label == "cup"  # default label = the instruction
    assert result.image_size == (640, 480) and result.model_input_size == (644, 476)


def test_boxes_are_clipped_to_the_image_and_corners_ordered():
    result = build_grounding_result("x", ("box",), {"box": "[300, 400, -20, 50]"}, (100, 200), (100, 200))
    box = result.boxes[0]
    assert (box.x1, box.y1, box.x2, box.y2) == (0.0, 50.0, 100.0, 200.0)


def test_prompts_are_in_one_overridable_table():
    assert set(GROUNDING_PROMPTS) == {"box", "point", "trace"}
    assert grounding_prompt("box", "the apple.").startswith("Give the bounding box for the apple")
    assert grounding_prompt("box", "apple", {"box": "Where is {target}?"}) == "Where is apple?"
    with pytest.raises(ValueError, match="unknown grounding kind"):
        grounding_prompt("mask", "apple")


def test_no_torch_imported_by_parsing_alone():
    assert "internvla_core.grounding" in sys.modules
