"""The README's demo command runs the simulated loop end to end and leaves honest, readable artefacts."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")

from internvla_bringup.demo import main


@pytest.mark.ros
@pytest.mark.parametrize("robot", ["franka", "widowx"])
def test_demo_runs_the_sim_graph_and_writes_video_bag_summary_and_plot(tmp_path, robot):
    argv = ["--out", str(tmp_path), "--steps", "5", "--width", "160", "--height", "120", "--timeout", "300"]
    assert main([*argv, "--robot", robot, "--task", "red_on_plate"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["setup"] == f"sim_{robot}"
    assert summary["policy_steps"] == 5 and summary["goal_result"] == "finished"
    assert isinstance(summary["success"], bool)
    from internvla_bringup.graphs import shipped_model

    shipped = shipped_model(robot, "red_on_plate")
    if shipped is not None:  # the model trained here, named with its weights' digest
        assert "trained in this repository" in summary["model_note"]
        assert summary["model"]["checkpoint"] == str(shipped) and len(summary["model"]["sha256"]) == 64
    else:  # no model trained here for this task and robot yet: the random model, said so
        assert "untrained" in summary["model_note"] and summary["model"]["checkpoint"] == ""
    assert summary["sim_steps"] >= 4 and summary["sim_time_s"] > 0
    assert summary["grounding"] is not None  # the Ground service answered (random text, maybe no box)
    assert summary["latency_s"]["policy/total"]["count"] == 5

    import imageio.v2 as imageio

    reader = imageio.get_reader(tmp_path / "episode.mp4")
    assert reader.count_frames() == summary["frames"] >= 5
    assert reader.get_data(0).shape == (120, 160, 3)
    reader.close()

    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    topics: dict[str, int] = {}
    with open(tmp_path / "episode.mcap", "rb") as f:
        for _schema, channel, _message, decoded in make_reader(
            f, decoder_factories=[DecoderFactory()]
        ).iter_decoded_messages():
            topics[channel.topic] = topics.get(channel.topic, 0) + 1
            if channel.topic == "action_chunk" and decoded.rows:
                assert len(decoded.data) == decoded.rows * decoded.cols
    for topic in (
        "camera/image_raw",
        "joint_states",
        "action_chunk",
        "arm_controller/joint_trajectory",
        "grounding",
    ):
        assert topics.get("/" + topic, 0) > 0, topic  # recorded fully qualified, as rosbag2 does
    assert (tmp_path / "latency.png").stat().st_size > 1000


def test_the_demo_runs_a_model_at_the_guidance_scale_it_was_evaluated_at():
    import argparse

    from internvla_bringup.demo import demo_cfg_scale

    assert demo_cfg_scale(argparse.Namespace(cfg_scale=None), {"cfg_scale": 3.0}) == 3.0  # the card's
    assert demo_cfg_scale(argparse.Namespace(cfg_scale=1.0), {"cfg_scale": 3.0}) == 1.0  # the flag wins
    assert demo_cfg_scale(argparse.Namespace(cfg_scale=None), {"note": "untrained"}) is None  # the node's


def test_the_demo_runs_a_model_with_the_executor_settings_it_was_evaluated_with():
    import argparse

    from internvla_bringup.demo import build_parser, demo_executor_params

    card = {"executor": {"gripper_commit_steps": 8}}
    assert demo_executor_params(argparse.Namespace(gripper_commit_steps=None), card) == {
        "gripper_commit_steps": 8
    }
    assert demo_executor_params(argparse.Namespace(gripper_commit_steps=0), card) == {
        "gripper_commit_steps": 0
    }
    assert demo_executor_params(argparse.Namespace(gripper_commit_steps=None), {"note": "untrained"}) == {}
    assert build_parser().parse_args(["--gripper-commit-steps", "12"]).gripper_commit_steps == 12


def test_demo_names_the_model_it_runs(tmp_path, monkeypatch):
    """--random-model, a robot or task without a model trained here, and a checkpoint with a model card
    (what export_model writes) each give the summary an identity: path, weights digest, card fields."""
    import argparse
    import hashlib

    from internvla_bringup.demo import model_identity
    from internvla_core.model.tiny import build_tiny_checkpoint

    def args(**kw):
        base = {"random_model": False, "checkpoint": "", "robot": "widowx", "task": "pick_green"}
        return argparse.Namespace(**{**base, **kw})

    assert model_identity(args(random_model=True))["checkpoint"] == ""
    assert "untrained" in model_identity(args(random_model=True))["note"]
    assert "no model trained here for pick_green on the widowx" in model_identity(args())["note"]
    # with only a pick_green model for the Franka, another task gets the random model, said so
    from internvla_bringup import graphs

    only_pick = tmp_path / "models"
    (only_pick / graphs.shipped_model_name("franka", "pick_green")).mkdir(parents=True)
    (only_pick / graphs.shipped_model_name("franka", "pick_green") / "config.yaml").write_text(
        "framework: {}\n"
    )
    with monkeypatch.context() as patched:
        patched.setattr(graphs, "models_dir", lambda: only_pick)
        other_task = model_identity(args(robot="franka", task="push_blue_left"))
    assert other_task["checkpoint"] == "" and "for push_blue_left on the franka" in other_task["note"]
    run = tmp_path / "run"
    build_tiny_checkpoint(run)
    (run / "model_card.json").write_text(json.dumps({"summary": "pick_green, toy", "training_steps": 7}))
    identity = model_identity(args(checkpoint=str(run)))
    weights = next((run / "checkpoints").glob("*.pt"))
    assert identity["weights"] == str(weights)
    assert identity["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert identity["training_steps"] == 7 and "pick_green, toy" in identity["note"]
