"""The public policy API on the tiny checkpoint: outputs, properties, errors, grounding coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from internvla_core.grounding import GroundingResult
from internvla_core.model import ActionPrediction, load_policy, tiny_checkpoint
from internvla_core.model.vlm import smart_resize
from internvla_core.normalization import UnnormKeyError, action_stats, unnormalize_actions


@pytest.fixture(scope="module")
def policy():
    p = load_policy(tiny_checkpoint())
    yield p
    p.close()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)


def test_properties_describe_the_loaded_checkpoint(policy):
    assert policy.action_horizon == 16 and policy.action_dim == 7
    assert policy.unnorm_keys == ["oxe_bridge", "oxe_rt1", "franka"]
    assert policy.device == torch.device("cpu") and policy.dtype == torch.float32
    assert policy.checkpoint_path.name == "steps_0_pytorch_model.pt"
    assert set(policy.norm_stats) == set(policy.unnorm_keys)


def test_prediction_fields_and_unnormalisation(policy, image):
    pred = policy.predict_action([image], "put the carrot on the plate", unnorm_key="oxe_rt1", seed=3)
    assert isinstance(pred, ActionPrediction)
    assert pred.normalized.shape == (16, 7) and pred.normalized.dtype == np.float32
    assert pred.actions.shape == (16, 7) and pred.actions.dtype == np.float64
    assert pred.unnorm_key == "oxe_rt1"
    expected = unnormalize_actions(pred.normalized, action_stats(policy.norm_stats, "oxe_rt1"))
    np.testing.assert_array_equal(pred.actions, expected)
    assert set(pred.actions[:, 6]) <= {0.0, 1.0}
    assert set(pred.stages) == {"preprocess", "vlm", "dino", "qformer", "dit", "total"}
    assert all(v >= 0 for v in pred.stages.values())
    assert pred.stages["total"] >= pred.stages["vlm"]


def test_unnorm_key_must_be_chosen_when_there_are_several(policy, image):
    with pytest.raises(UnnormKeyError, match="oxe_bridge"):
        policy.predict_action(image, "pick", seed=0)
    with pytest.raises(UnnormKeyError, match="not in dataset statistics"):
        policy.predict_action(image, "pick", unnorm_key="bridge_dataset", seed=0)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((224, 224), dtype=np.uint8), "HxWx3"),
        (np.zeros((224, 224, 3), dtype=np.float32), "uint8"),
    ],
)
def test_bad_images_are_rejected_clearly(policy, bad, match):
    with pytest.raises(ValueError, match=match):
        policy.predict_action(bad, "pick", unnorm_key="oxe_rt1", seed=0)


def test_bad_arguments_are_rejected(policy, image):
    with pytest.raises(ValueError, match="instruction"):
        policy.predict_action(image, "  ", unnorm_key="oxe_rt1")
    with pytest.raises(ValueError, match="num_ddim_steps"):
        policy.predict_action(image, "pick", unnorm_key="oxe_rt1", num_ddim_steps=0)
    with pytest.raises(ValueError, match="initial_noise must have shape"):
        policy.predict_action(image, "pick", unnorm_key="oxe_rt1", initial_noise=np.zeros((3, 7)))


def test_ground_returns_source_pixel_coordinates_on_a_non_square_image(policy, monkeypatch):
    """The model answers in processor-resized pixels; the result must be in the source image's pixels."""
    source = Image.fromarray(np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    model_h, model_w = smart_resize(480, 640)
    assert (model_w, model_h) == (644, 476)
    real_chat = policy.model.chat
    answers = {
        "Give": '```json\n[{"bbox_2d": [161, 119, 322, 238], "label": "cup"}]\n```',
        "Point": '[{"point_2d": [644, 476], "label": "cup"}]',
    }

    def scripted_chat(img, text, max_new_tokens=128):
        _, inputs, ids = real_chat(img, text, max_new_tokens=2)  # real preprocessing -> real input size
        return answers[text.split()[0]], inputs, ids

    monkeypatch.setattr(policy.model, "chat", scripted_chat)
    result = policy.ground(source, "the cup", kinds=("box", "point"))
    assert isinstance(result, GroundingResult) and result.error is None
    assert result.image_size == (640, 480) and result.model_input_size == (644, 476)
    box = result.boxes[0]
    sx, sy = 640 / 644, 480 / 476
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((161 * sx, 119 * sy, 322 * sx, 238 * sy))
    assert (result.points[0].u, result.points[0].v) == pytest.approx((640.0, 480.0))


def test_ground_with_an_untrained_model_gives_raw_text_not_an_exception(policy):
    img = np.random.default_rng(2).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    result = policy.ground(img, "the apple", kinds=("box",), max_new_tokens=6)
    assert set(result.raw_text) == {"box"}
    assert result.model_input_size == (308, 196)
    if result.empty:
        assert result.error
    assert result.inference_time > 0


def test_close_frees_the_model_and_later_calls_fail_clearly(image):
    p = load_policy(tiny_checkpoint())
    p.close()
    assert p.closed
    p.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        p.predict_action(image, "pick", unnorm_key="oxe_rt1")
