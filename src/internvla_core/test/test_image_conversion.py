"""Image message fields <-> numpy without cv_bridge: encodings, padding, endianness, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from internvla_core.image_conversion import (
    ImageConversionError,
    depth_to_image_fields,
    image_to_array,
    image_to_depth_m,
    image_to_rgb,
    rgb_to_image_fields,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)


def fields(array: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> dict:
    height, width = array.shape[:2]
    wire = (
        array.astype(array.dtype.newbyteorder(">" if bigendian else "<"))
        if array.dtype.itemsize > 1
        else array
    )
    rows = wire.reshape(height, -1).view(np.uint8).reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 0xAB, dtype=np.uint8)], axis=1)
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": int(bigendian),
        "step": padded.shape[1],
        "data": padded.tobytes(),
    }


@pytest.mark.parametrize("pad", [0, 5])
def test_colour_encodings_all_come_out_as_rgb(pad):
    assert np.array_equal(image_to_rgb(**fields(RGB, "rgb8", pad)), RGB)
    assert np.array_equal(image_to_rgb(**fields(RGB[:, :, ::-1].copy(), "bgr8", pad)), RGB)
    rgba = np.concatenate([RGB, np.full((3, 4, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(**fields(rgba, "rgba8", pad)), RGB)
    bgra = np.concatenate([RGB[:, :, ::-1], np.full((3, 4, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(**fields(bgra, "bgra8", pad)), RGB)
    mono = RGB[:, :, 0].copy()
    assert np.array_equal(image_to_rgb(**fields(mono, "mono8", pad)), np.repeat(mono[:, :, None], 3, 2))
    mono16 = (mono.astype(np.uint16) << 8) | 0x55
    assert np.array_equal(image_to_rgb(**fields(mono16, "mono16", pad, bigendian=True))[:, :, 1], mono)


def test_depth_in_millimetres_and_metres_with_invalid_pixels_as_nan():
    mm = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    for big in (False, True):
        depth = image_to_depth_m(**fields(mm, "16UC1", pad=2, bigendian=big))
        assert np.isnan(depth[0, 0])
        np.testing.assert_allclose(depth[[0, 1, 1], [1, 0, 1]], [1.0, 1.5, 65.535], rtol=1e-6)
    metres = np.array([[np.nan, 0.5], [-1.0, np.inf]], dtype=np.float32)
    depth = image_to_depth_m(**fields(metres, "32FC1", bigendian=True))
    assert depth[0, 1] == pytest.approx(0.5)
    assert np.isnan(depth[0, 0]) and np.isnan(depth[1, 0]) and np.isnan(depth[1, 1])


def test_round_trip_through_message_fields():
    assert np.array_equal(image_to_rgb(**rgb_to_image_fields(RGB)), RGB)
    depth = RNG.uniform(0.2, 3.0, size=(5, 6)).astype(np.float32)
    np.testing.assert_array_equal(image_to_depth_m(**depth_to_image_fields(depth)), depth)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoding": "yuv422"}, "unsupported image encoding"),
        ({"height": 0, "width": 0, "step": 0, "data": b""}, "empty image"),
        ({"step": 5}, "step 5 is smaller"),
        ({"data": b"\x00" * 10}, "needs 36"),
    ],
)
def test_bad_messages_raise_a_clear_error(change, message):
    f = fields(RGB, "rgb8")
    f.update(change)
    with pytest.raises(ImageConversionError, match=message):
        image_to_rgb(**f)


def test_depth_encoding_for_the_colour_path_and_vice_versa_is_refused():
    with pytest.raises(ImageConversionError, match="depth encoding"):
        image_to_rgb(**fields(np.zeros((2, 2), np.float32), "32FC1"))
    with pytest.raises(ImageConversionError, match="16UC1"):
        image_to_depth_m(**fields(RGB, "rgb8"))


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(-2, 6),
    width=st.integers(-2, 6),
    encoding=st.sampled_from(["rgb8", "bgr8", "rgba8", "mono8", "mono16", "16UC1", "32FC1", "bayer", ""]),
    step=st.integers(-4, 40),
    bigendian=st.booleans(),
    data=st.binary(max_size=200),
)
def test_any_malformed_message_either_converts_or_raises_the_documented_error(
    height, width, encoding, step, bigendian, data
):
    try:
        out = image_to_array(height, width, encoding, bigendian, step, data)
    except ImageConversionError:
        return
    assert out.shape[:2] == (height, width)
