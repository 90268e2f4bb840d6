"""What the policy node builds on configure, without ROS: views, image topics, threads, backend, RTC."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from internvla_core.policy_setup import (
    check_views_fit_model,
    image_topics,
    load_policy_model,
    make_rtc,
    policy_views,
    torch_thread_count,
    trained_views,
)

TOPICS = {"third_person": "camera/image_raw", "wrist": "wrist_camera/image_raw"}


def test_the_wrist_view_is_added_once_after_the_embodiments_views():
    assert policy_views(("third_person",), wrist_view=False) == ["third_person"]
    assert policy_views(("third_person",), wrist_view=True) == ["third_person", "wrist"]
    assert policy_views(("third_person", "wrist"), wrist_view=True) == ["third_person", "wrist"]


def test_a_view_without_an_image_topic_fails_naming_the_known_ones():
    assert image_topics(["third_person"], TOPICS, "widowx_bridge") == {"third_person": "camera/image_raw"}
    with pytest.raises(ValueError, match=r"uses view 'left', which has no image topic parameter \(known"):
        image_topics(["third_person", "left"], TOPICS, "aloha")


def test_a_two_view_model_refuses_one_view_and_says_to_turn_the_wrist_camera_on():
    config = {"datasets": {"vla_data": {"cameras": ["third_person", "wrist"]}}}
    trained = trained_views(config)
    assert trained == ["third_person", "wrist"]
    check_views_fit_model(["third_person", "wrist"], trained)
    with pytest.raises(ValueError, match=r"trained on 2 view\(s\).*set wrist_view: true"):
        check_views_fit_model(["third_person"], trained)
    with pytest.raises(ValueError, match=r"set wrist_view: false"):
        check_views_fit_model(["third_person", "wrist"], ["third_person"])


def test_a_config_that_names_no_cameras_is_not_checked():
    assert trained_views({"datasets": {"vla_data": {"obs": ["image_0"]}}}) is None
    assert trained_views({}) is None
    check_views_fit_model(["third_person", "wrist"], None)


def test_torch_threads_leave_a_core_on_cpu_and_keep_the_default_on_gpu():
    assert torch_thread_count(-1, "cpu", 8) == 7
    assert torch_thread_count(-1, "cpu", 1) == 1
    assert torch_thread_count(-1, "cuda:0", 8) is None
    assert torch_thread_count(0, "cpu", 8) is None
    assert torch_thread_count(3, "cuda", 8) == 3


def params(**overrides) -> SimpleNamespace:
    values = dict(
        backend="local",
        rtc=False,
        rtc_delay_steps=-1,
        rtc_overlap_steps=0,
        rtc_control_period=0.0,
        dataset_statistics="",
        remote_url="ws://127.0.0.1:1",
        remote_api_key="",
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def test_rtc_is_off_by_default_needs_the_local_backend_and_uses_the_embodiments_period():
    assert make_rtc(params(), 0.2) is None
    with pytest.raises(ValueError, match="rtc needs the local backend"):
        make_rtc(params(rtc=True, backend="remote"), 0.2)
    rtc = make_rtc(params(rtc=True, rtc_delay_steps=2), 0.2)
    assert rtc.control_period == 0.2 and rtc.delay() == 2
    assert make_rtc(params(rtc=True, rtc_control_period=0.05), 0.2).control_period == 0.05


def test_the_remote_backend_needs_the_served_checkpoints_statistics():
    with pytest.raises(ValueError, match="backend remote needs dataset_statistics"):
        load_policy_model(params(backend="remote"), print, print)
    with pytest.raises(ValueError, match="backend must be local or remote, got 'gpu'"):
        load_policy_model(params(backend="gpu"), print, print)


def test_the_local_model_loads_with_a_dtype_by_name_and_is_released_on_close():
    from internvla_core.model.registry import default_registry

    local = params(checkpoint="", device="cpu", dtype="float32", spatial_prompt=True)
    local.torch_threads, local.gil_switch_interval = 0, 0.0  # leave the test process's settings alone
    warnings: list[str] = []
    model = load_policy_model(local, warnings.append, lambda _: None)
    try:
        assert model.policy is not None and "oxe_bridge" in model.backend.unnorm_keys
        assert default_registry().refcount(model.policy) == 1
        assert warnings and "untrained tiny factory model" in warnings[0]
    finally:
        model.close()
    assert model.policy is None


def test_a_model_card_gives_the_policy_its_guidance_scale_and_the_executor_its_settings(tmp_path):
    import json

    from internvla_core.policy_setup import card_node_parameters, local_model_card

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "steps_10_pytorch_model.pt").write_bytes(b"")
    assert local_model_card(str(run)) is None  # no card: nothing to apply
    card = {"name": "m", "cfg_scale": 3.0, "executor": {"gripper_commit_steps": 8}, "training_steps": 10}
    (run / "model_card.json").write_text(json.dumps(card))
    for checkpoint in (str(run), str(run / "checkpoints" / "steps_10_pytorch_model.pt")):
        assert card_node_parameters(local_model_card(checkpoint)) == {
            "policy_node": {"cfg_scale": 3.0},
            "chunk_executor": {"gripper_commit_steps": 8},
        }
    assert local_model_card("") is None and local_model_card("org/hub-run") is None  # no download
    with pytest.raises(ValueError, match="gripper_commit_steps must be a number"):
        card_node_parameters({"executor": {"gripper_commit_steps": "eight"}})
    (run / "model_card.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        local_model_card(str(run))
