"""rotate_half_turn: upside-down cameras are turned the right way up, in a contiguous array."""

from __future__ import annotations

import numpy as np

from internvla_core.image_conversion import rotate_half_turn


def test_a_half_turn_moves_the_top_left_pixel_to_the_bottom_right_and_keeps_channels():
    image = np.zeros((3, 4, 3), dtype=np.uint8)
    image[0, 0] = (255, 10, 20)
    turned = rotate_half_turn(image)
    assert turned.shape == image.shape and turned.flags["C_CONTIGUOUS"]
    assert tuple(turned[2, 3]) == (255, 10, 20) and not turned[0, 0].any()


def test_two_half_turns_give_the_image_back_and_the_input_is_not_changed():
    image = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    before = image.copy()
    np.testing.assert_array_equal(rotate_half_turn(rotate_half_turn(image)), image)
    np.testing.assert_array_equal(image, before)
