"""recorder: records episodes of a setup's recording contract, one rosbag2-style MCAP bag per episode.

A ManagedNode. ``configure`` reads the contract (``config/recording/<setup>.yaml``: the features'
topics and the extra topics), creates the output directory and the services; ``activate`` subscribes
(raw CDR, no conversion); messages are written only while an episode is open; ``deactivate`` stops an
open episode (kept, not discarded). Episode files: internvla_core.episode_files.

Services (internvla_msgs/srv):

- ``~/start_episode`` (StartEpisode: task) opens ``<output_dir>/episode_NNNNNN/`` with
  ``episode_NNNNNN_0.mcap``, rosbag2's ``metadata.yaml`` (written when the episode stops) and
  ``episode.json`` (task, contract, success, note, message count, duration);
- ``~/stop_episode`` (StopEpisode: discard) finishes the MCAP; ``discard`` deletes the episode;
- ``~/mark_episode`` (MarkEpisode: success, note) labels the open episode, or the last one stopped.

An episode longer than the contract's ``episode.max_duration_s`` (graph clock) is stopped by the node.
``log_time`` is the receive time on the node's clock: give it ``use_sim_time`` in simulation.
Parameters: params/recorder.yaml.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from internvla_core.episode_files import (
    contract_entries,
    mark_sidecar_file,
    new_sidecar,
    next_episode_directory,
    over_duration,
    resolve_contract,
    write_json,
)
from internvla_ros_common.lifecycle import ManagedNode
from internvla_ros_common.node_main import main_for
from internvla_ros_common.params import Params

from .recording import McapRecorder, TopicRecorder, TopicSpec, available_topics

SCHEMA = Path(__file__).parent / "params" / "recorder.yaml"


def contract_topics(contract: dict) -> list[TopicSpec]:
    """Every topic a contract names (features first, then ``extra_topics``), once each."""
    return [
        TopicSpec(e["topic"], e["type"], latched=e["latched"], optional_module=e["optional"])
        for e in contract_entries(contract)
    ]


class RecorderNode(ManagedNode):
    """Episodes of a recording contract as MCAP bags, started and stopped by service."""

    def __init__(self, node_name: str = "recorder", **kwargs) -> None:
        super().__init__(node_name, SCHEMA, **kwargs)
        self._lock = threading.Lock()
        self.contract: dict | None = None
        self.contract_path: Path | None = None
        self.output_dir: Path | None = None
        self.topic_recorder: TopicRecorder | None = None
        self._episode: dict | None = None  # path, recorder, sidecar, start (graph ns)
        self._last_episode: Path | None = None
        self._services: list = []

    # ------------------------------------------------------------------------------- lifecycle
    def setup(self, params: Params) -> None:
        import yaml

        from internvla_msgs.srv import MarkEpisode, StartEpisode, StopEpisode

        from .graphs import config_dir

        self.contract_path = resolve_contract(params.contract, config_dir() / "recording")
        self.contract = yaml.safe_load(self.contract_path.read_text())
        self.specs = available_topics(contract_topics(self.contract))
        self.output_dir = Path(params.output_dir).expanduser()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._services = [
            self.create_service(StartEpisode, "~/start_episode", self._on_start),
            self.create_service(StopEpisode, "~/stop_episode", self._on_stop),
            self.create_service(MarkEpisode, "~/mark_episode", self._on_mark),
        ]

    def activate(self) -> None:
        self.topic_recorder = TopicRecorder(self, self.specs)
        self.managed_timer(1.0, self._check_duration)

    def deactivate(self) -> None:
        self.stop_episode(discard=False, reason="recorder deactivated")
        if self.topic_recorder is not None:
            self.topic_recorder.destroy()
            self.topic_recorder = None

    def teardown(self) -> None:
        self.deactivate()  # shutdown from active comes here too: an open episode is kept
        for service in self._services:
            self.destroy_service(service)
        self._services = []
        self.contract = self.contract_path = None

    # ------------------------------------------------------------------------------- episodes
    def start_episode(self, task: str) -> tuple[bool, str, str]:
        with self._lock:
            if not self.is_active:
                return False, "the recorder is not active", ""
            if self._episode is not None:
                return False, f"episode {self._episode['path']} is still open: stop it first", ""
            path = next_episode_directory(self.output_dir)
            sidecar = new_sidecar(task, self.contract_path.name, self.contract.get("setup", ""), time.time())
            recorder = McapRecorder(
                path / f"{path.name}_0.mcap",
                custom_data={"task": task, "contract": self.contract_path.read_text()},
            )
            write_json(path / "episode.json", sidecar)
            start = self.get_clock().now().nanoseconds
            self._episode = {"path": path, "recorder": recorder, "sidecar": sidecar, "start": start}
            self.topic_recorder.start(recorder)
        self.get_logger().info(f"recording episode {path} ('{task}')")
        return True, "recording", str(path)

    def stop_episode(self, discard: bool, reason: str = "") -> tuple[bool, str, str, int, float]:
        """(ok, message, episode path, messages written, duration [s]) of stopping the open episode."""
        with self._lock:
            episode, self._episode = self._episode, None
            if episode is None:
                return False, "no episode is open", "", 0, 0.0
            if self.topic_recorder is not None:
                self.topic_recorder.stop()
            recorder: McapRecorder = episode["recorder"]
            recorder.close()
            path: Path = episode["path"]
            duration = ((recorder.last_ns or 0) - (recorder.first_ns or 0)) / 1e9
            if discard:
                shutil.rmtree(path)
                return True, "discarded", str(path), recorder.count, duration
            sidecar = episode["sidecar"]
            sidecar.update(
                messages=recorder.count, duration_s=duration, stopped_unix=time.time(), stop_reason=reason
            )
            write_json(path / "episode.json", sidecar)
            self._last_episode = path
        self.get_logger().info(f"episode {path}: {recorder.count} messages, {duration:.2f} s ({reason})")
        return True, "stopped", str(path), recorder.count, duration

    _stop_episode = stop_episode  # the name the older tests and tools call

    def mark_episode(self, success: bool, note: str) -> tuple[bool, str, str]:
        with self._lock:
            if self._episode is not None:
                self._episode["sidecar"].update(success=bool(success), note=note)
                path = self._episode["path"]
                write_json(path / "episode.json", self._episode["sidecar"])
                return True, "marked (open episode)", str(path)
            if self._last_episode is None:
                return False, "no episode to mark", ""
            mark_sidecar_file(self._last_episode / "episode.json", success, note)
            return True, "marked (last stopped episode)", str(self._last_episode)

    def _check_duration(self) -> None:
        limit = float((self.contract.get("episode") or {}).get("max_duration_s", 0) or 0)
        with self._lock:
            episode = self._episode
        if episode is not None and over_duration(episode["start"], self.get_clock().now().nanoseconds, limit):
            self.stop_episode(discard=False, reason=f"longer than max_duration_s {limit}")

    # ------------------------------------------------------------------------------- services
    def _on_start(self, request, response):
        response.success, response.message, response.episode_path = self.start_episode(request.task)
        return response

    def _on_stop(self, request, response):
        ok, message, path, count, duration = self.stop_episode(bool(request.discard), "stop_episode service")
        response.success, response.message, response.episode_path = ok, message, path
        response.messages_written, response.duration = count, duration
        return response

    def _on_mark(self, request, response):
        response.accepted, response.message, response.episode_path = self.mark_episode(
            request.success, request.note
        )
        return response


main = main_for(RecorderNode, threads=2)

if __name__ == "__main__":
    main()
