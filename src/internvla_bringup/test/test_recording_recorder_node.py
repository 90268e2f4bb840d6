"""The recorder node: lifecycle, episodes through its services, parameters from its schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mcap")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from internvla_bringup.recorder_node import SCHEMA, RecorderNode  # noqa: E402
from internvla_msgs.srv import MarkEpisode, StartEpisode, StopEpisode  # noqa: E402
from internvla_ros_common.lifecycle import FAILURE, SUCCESS  # noqa: E402
from internvla_ros_common.params import ParameterSchemaError  # noqa: E402
from internvla_ros_common.schema import load_schema, readme_drift  # noqa: E402
from internvla_ros_common.testing import Spinner, ros_context, run_lifecycle_cycles, wait_for  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1]


def recorder(context, **parameters) -> RecorderNode:
    overrides = [Parameter(k, value=v) for k, v in parameters.items()]
    return RecorderNode(context=context, parameter_overrides=overrides)


def call(peer: Node, srv_type, name: str, request):
    client = peer.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(request)
    assert wait_for(future.done, 20)
    return future.result()


@pytest.mark.ros
def test_episodes_are_started_marked_and_stopped_through_the_services(tmp_path):
    with ros_context() as context:
        node = recorder(context, contract="sim_franka", output_dir=str(tmp_path))
        peer = Node("operator", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(peer)
        try:
            with Spinner(executor):
                assert node.trigger_configure() == SUCCESS
                refused = call(peer, StartEpisode, "/recorder/start_episode", StartEpisode.Request(task="x"))
                assert not refused.success and "not active" in refused.message
                assert node.trigger_activate() == SUCCESS
                started = call(
                    peer, StartEpisode, "/recorder/start_episode", StartEpisode.Request(task="pick")
                )
                assert started.success and started.episode_path.endswith("episode_000000")
                again = call(peer, StartEpisode, "/recorder/start_episode", StartEpisode.Request(task="pick"))
                assert not again.success and "still open" in again.message
                stopped = call(
                    peer, StopEpisode, "/recorder/stop_episode", StopEpisode.Request(discard=False)
                )
                assert stopped.success and stopped.episode_path == started.episode_path
                marked = call(
                    peer, MarkEpisode, "/recorder/mark_episode", MarkEpisode.Request(success=True, note="ok")
                )
                assert marked.accepted and "last stopped" in marked.message
                # deactivating with an open episode keeps it, stopped, with the reason
                call(peer, StartEpisode, "/recorder/start_episode", StartEpisode.Request(task="place"))
                assert node.trigger_deactivate() == SUCCESS
        finally:
            executor.shutdown()
            peer.destroy_node()
            node.destroy_node()
    first = json.loads((tmp_path / "episode_000000" / "episode.json").read_text())
    assert (first["task"], first["success"], first["note"]) == ("pick", True, "ok")
    second = json.loads((tmp_path / "episode_000001" / "episode.json").read_text())
    assert second["task"] == "place" and second["stop_reason"] == "recorder deactivated"
    assert (tmp_path / "episode_000001" / "episode_000001_0.mcap").is_file()


@pytest.mark.ros
def test_a_hundred_lifecycle_cycles_in_one_process(tmp_path):
    with ros_context() as context:
        node = recorder(context, contract="sim_franka", output_dir=str(tmp_path))
        try:
            assert run_lifecycle_cycles(node, 100) == [("success",) * 4] * 100
            assert node.topic_recorder is None and node.contract is None and node._services == []
        finally:
            node.destroy_node()


@pytest.mark.ros
def test_a_contract_that_does_not_exist_fails_configure_and_a_fixed_one_succeeds(tmp_path):
    with ros_context() as context:
        node = recorder(context, contract="no_such_setup", output_dir=str(tmp_path))
        try:
            assert node.trigger_configure() == FAILURE
            assert node.lifecycle_state == "unconfigured" and node.contract is None
            assert node.set_parameters([Parameter("contract", value="sim_franka")])[0].successful
            assert node.trigger_configure() == SUCCESS
        finally:
            node.destroy_node()


@pytest.mark.ros
def test_unknown_and_missing_parameters_are_refused_at_start_with_what_to_do(tmp_path):
    with ros_context() as context:
        with pytest.raises(ParameterSchemaError, match="Did you mean: 'output_dir'"):
            recorder(context, contract="sim_franka", outpt_dir=str(tmp_path))
        with pytest.raises(ParameterSchemaError, match=r"'contract' is required.*-p contract:="):
            recorder(context)
        with pytest.raises(ParameterSchemaError, match="'contract' cannot be empty"):
            recorder(context, contract="")


def test_the_readme_block_is_generated_from_the_schema():
    schema = load_schema(SCHEMA)
    assert all(spec.description for spec in schema.parameters.values())
    assert readme_drift(PACKAGE / "README.md", schema) is None
