"""3D grounding needs the camera-to-base transform: decide_3d_frame never assumes identity."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_core.camera import decide_3d_frame, pose_to_matrix

OPTICAL = "camera_color_optical_frame"


def test_no_target_frame_keeps_3d_in_the_optical_frame():
    decision = decide_3d_frame("", OPTICAL)
    assert decision.publish_3d and decision.frame == OPTICAL and decision.transform is None
    assert decide_3d_frame(OPTICAL, OPTICAL).publish_3d


def test_missing_transform_refuses_3d_and_says_why():
    decision = decide_3d_frame("fr3_link0", OPTICAL, tf_error="frame does not exist")
    assert not decision.publish_3d and decision.transform is None and decision.frame == ""
    assert "camera_color_optical_frame -> fr3_link0" in decision.reason
    assert "frame does not exist" in decision.reason and "calibration" in decision.reason
    assert not decide_3d_frame("fr3_link0", OPTICAL, static_extrinsic=[]).publish_3d  # unset


def test_tf_transform_is_used_before_a_static_extrinsic():
    tf = pose_to_matrix([0.5, 0.0, 0.7], [0.0, 0.0, 0.0, 1.0])
    decision = decide_3d_frame("fr3_link0", OPTICAL, tf, static_extrinsic=[1, 2, 3, 0, 0, 0, 1])
    assert decision.publish_3d and decision.source == "tf" and decision.frame == "fr3_link0"
    np.testing.assert_array_equal(decision.transform, tf)


def test_an_explicit_static_extrinsic_is_a_calibration():
    decision = decide_3d_frame("table", OPTICAL, static_extrinsic=[1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0])
    assert decision.publish_3d and decision.source == "static_extrinsic"
    assert decision.transform[:3, 3] == pytest.approx([1.0, 0.0, 0.5])


@pytest.mark.parametrize(
    "tf, extrinsic",
    [
        (np.full((4, 4), np.nan), None),
        (np.diag([2.0, 1.0, 1.0, 1.0]), None),  # not a rotation
        (np.diag([-1.0, 1.0, 1.0, 1.0]), None),  # a reflection
        (None, [0.0, 0.0, 0.0]),  # too few values
        (None, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),  # zero quaternion
    ],
)
def test_bad_transforms_are_refused(tf, extrinsic):
    decision = decide_3d_frame("base", OPTICAL, tf, static_extrinsic=extrinsic)
    assert not decision.publish_3d and decision.reason
