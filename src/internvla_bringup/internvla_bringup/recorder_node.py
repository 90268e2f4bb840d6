"""recorder: records episodes of a setup's recording contract, one rosbag2-style MCAP bag per episode.

Lifecycle node (like the other nodes of the graph). ``configure`` reads the contract
(``config/recording/<setup>.yaml``: the features' topics and the extra topics) and the output directory;
``activate`` subscribes (raw CDR, no conversion); messages are written only while an episode is open.

Services (internvla_msgs/srv):

- ``~/start_episode`` (StartEpisode: task) opens ``<output_dir>/episode_NNNNNN/`` (the next free number;
  an existing directory is never reused or overwritten) with ``episode_NNNNNN_0.mcap``, rosbag2's
  ``metadata.yaml`` (written when the episode stops) and ``episode.json`` (task, contract, success,
  note, message count, duration);
- ``~/stop_episode`` (StopEpisode: discard) finishes the MCAP; ``discard`` deletes the episode;
- ``~/mark_episode`` (MarkEpisode: success, note) labels the open episode, or the last one stopped.

An episode longer than the contract's ``episode.max_duration_s`` (graph clock) is stopped by the node.
``log_time`` is the receive time on the node's clock: give it ``use_sim_time`` in simulation.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import rclpy
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from .recording import McapRecorder, TopicRecorder, TopicSpec, available_topics


def contract_topics(contract: dict) -> list[TopicSpec]:
    """Every topic a contract names (features first, then ``extra_topics``), once each."""
    specs: list[TopicSpec] = []
    obs, actions = contract["observations"], contract["actions"]
    entries = [*(obs.get("images") or {}).values(), obs["joint_state"]]
    if obs.get("ee_pose"):
        entries.append(obs["ee_pose"])
    entries += [actions["joint_trajectory"], actions["gripper"]]
    for entry in entries:
        specs.append(TopicSpec(entry["topic"], entry["type"], latched=bool(entry.get("latched", False))))
    for entry in contract.get("extra_topics") or []:
        specs.append(
            TopicSpec(
                entry["topic"],
                entry["type"],
                latched=bool(entry.get("latched", False)),
                optional_module=bool(entry.get("optional", False)),
            )
        )
    seen, unique = set(), []
    for spec in specs:
        if spec.topic not in seen:
            seen.add(spec.topic)
            unique.append(spec)
    return unique


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class RecorderNode(LifecycleNode):
    def __init__(self, node_name: str = "recorder", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        from rcl_interfaces.msg import ParameterDescriptor

        self.declare_parameter(
            "contract", "", ParameterDescriptor(description="recording contract YAML (path or setup name)")
        )
        self.declare_parameter(
            "output_dir", "recordings", ParameterDescriptor(description="episodes are written below")
        )
        self._lock = threading.Lock()
        self.contract: dict | None = None
        self.contract_path: Path | None = None
        self.output_dir: Path | None = None
        self.topic_recorder: TopicRecorder | None = None
        self._active = False
        self._episode: dict | None = None  # path, recorder, sidecar, start (graph ns)
        self._last_episode: Path | None = None
        self._services = []
        self._timer = None

    # ------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        import yaml

        from internvla_msgs.srv import MarkEpisode, StartEpisode, StopEpisode

        from .graphs import config_dir

        try:
            name = self.get_parameter("contract").value
            if not name:
                raise ValueError("parameter 'contract' is empty (a path or a setup name such as sim_franka)")
            path = Path(name)
            if not path.suffix:
                path = config_dir() / "recording" / f"{name}.yaml"
            if not path.is_file():
                raise ValueError(f"contract {path} does not exist")
            self.contract = yaml.safe_load(path.read_text())
            self.contract_path = path
            self.specs = available_topics(contract_topics(self.contract))
            self.output_dir = Path(self.get_parameter("output_dir").value).expanduser()
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except Exception as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._services = [
            self.create_service(StartEpisode, "~/start_episode", self._on_start),
            self.create_service(StopEpisode, "~/stop_episode", self._on_stop),
            self.create_service(MarkEpisode, "~/mark_episode", self._on_mark),
        ]
        return super().on_configure(state)

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.topic_recorder = TopicRecorder(self, self.specs)
        self._timer = self.create_timer(1.0, self._check_duration)
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._active = False
        self._stop_episode(discard=False, reason="recorder deactivated")
        if self.topic_recorder is not None:
            self.topic_recorder.destroy()
            self.topic_recorder = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        for service in self._services:
            self.destroy_service(service)
        self._services = []
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_episode(discard=False, reason="recorder shut down")
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------------------- episodes
    def _next_directory(self) -> Path:
        existing = [
            int(p.name.split("_")[1]) for p in self.output_dir.glob("episode_*") if p.name[8:].isdigit()
        ]
        index = max(existing, default=-1) + 1
        while True:
            path = self.output_dir / f"episode_{index:06d}"
            try:
                path.mkdir()  # fails if it exists: never reuse an episode's directory
                return path
            except FileExistsError:
                index += 1

    def start_episode(self, task: str) -> tuple[bool, str, str]:
        with self._lock:
            if not self._active:
                return False, "the recorder is not active", ""
            if self._episode is not None:
                return False, f"episode {self._episode['path']} is still open: stop it first", ""
            path = self._next_directory()
            sidecar = {
                "task": task,
                "success": None,
                "note": "",
                "contract": self.contract_path.name,
                "setup": self.contract.get("setup", ""),
                "started_unix": time.time(),
            }
            recorder = McapRecorder(
                path / f"{path.name}_0.mcap",
                custom_data={"task": task, "contract": self.contract_path.read_text()},
            )
            write_json(path / "episode.json", sidecar)
            self._episode = {
                "path": path,
                "recorder": recorder,
                "sidecar": sidecar,
                "start": self.get_clock().now().nanoseconds,
            }
            self.topic_recorder.start(recorder)
        self.get_logger().info(f"recording episode {path} ('{task}')")
        return True, "recording", str(path)

    def _stop_episode(self, discard: bool, reason: str = "") -> tuple[bool, str, str, int, float]:
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

    def mark_episode(self, success: bool, note: str) -> tuple[bool, str, str]:
        with self._lock:
            if self._episode is not None:
                self._episode["sidecar"].update(success=bool(success), note=note)
                path = self._episode["path"]
                write_json(path / "episode.json", self._episode["sidecar"])
                return True, "marked (open episode)", str(path)
            if self._last_episode is None:
                return False, "no episode to mark", ""
            sidecar_path = self._last_episode / "episode.json"
            sidecar = json.loads(sidecar_path.read_text())
            sidecar.update(success=bool(success), note=note)
            write_json(sidecar_path, sidecar)
            return True, "marked (last stopped episode)", str(self._last_episode)

    def _check_duration(self) -> None:
        limit = float((self.contract.get("episode") or {}).get("max_duration_s", 0) or 0)
        with self._lock:
            episode = self._episode
        elapsed = (self.get_clock().now().nanoseconds - episode["start"]) / 1e9 if episode else 0.0
        if episode is not None and limit > 0 and elapsed > limit:
            self._stop_episode(discard=False, reason=f"longer than max_duration_s {limit}")

    # ------------------------------------------------------------------------------- services
    def _on_start(self, request, response):
        response.success, response.message, response.episode_path = self.start_episode(request.task)
        return response

    def _on_stop(self, request, response):
        ok, message, path, count, duration = self._stop_episode(bool(request.discard), "stop_episode service")
        response.success, response.message, response.episode_path = ok, message, path
        response.messages_written, response.duration = count, duration
        return response

    def _on_mark(self, request, response):
        response.accepted, response.message, response.episode_path = self.mark_episode(
            request.success, request.note
        )
        return response


def main(args=None) -> None:
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init(args=args)
    node = RecorderNode()
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    try:
        node.trigger_configure()
        node.trigger_activate()
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node._stop_episode(discard=False, reason="Ctrl-C")
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
