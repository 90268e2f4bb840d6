"""Record ROS topics to MCAP the way rosbag2's MCAP storage does, without rosbag2.

What a file written here holds (what ``ros2 bag info``, Foxglove and ``rosbags`` expect):

- profile ``ros2``; one schema per type, named ``pkg/msg/Type``, encoding ``ros2msg``: the type's ``.msg``
  text followed by every nested type once, each after a line of 80 ``=`` and ``MSG: pkg/msg/Type``
  (rosbag2's docs/message_definition_encoding.md), read from the ``.msg`` files the interface packages
  install under ``AMENT_PREFIX_PATH``;
- one channel per topic, message encoding ``cdr``, channel metadata ``offered_qos_profiles`` (rosbag2's
  YAML) so a replay offers latched topics (``/tf_static``, ``task/success``) transient-local again;
- messages as the CDR bytes rclpy delivers (``raw=True`` subscriptions, no Python conversion of images);
  ``log_time`` = receive time on the graph clock (sim time in simulation), ``publish_time`` = the
  message's ``header.stamp`` where its type starts with a ``std_msgs/Header``, else the receive time.
  Sim time starts at 0, and 0 is no usable log time (readers take it for "unset"): messages received
  while the graph clock still reads 0 (the sim's first step, latched topics before ``/clock``) are
  logged at the first non-zero reading; their ``publish_time`` keeps the true stamp;
- beside the ``.mcap`` a rosbag2 ``metadata.yaml`` (version 9, storage ``mcap``), so the directory is a
  rosbag2 bag: ``ros2 bag info DIR`` and ``rosbags.rosbag2.Reader(DIR)`` open it, and
  ``Reader(FILE.mcap)`` opens the file alone.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "string", "wstring",
}  # fmt: skip
SEPARATOR = "=" * 80


def normalize_type(name: str) -> str:
    """``pkg/Type``, ``pkg/msg/Type`` or ``pkg.msg.Type`` -> ``pkg/msg/Type``."""
    parts = [p for p in re.split(r"[/.]", name) if p]
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and parts[1] == "msg":
        return "/".join(parts)
    raise ValueError(f"'{name}' is not a message type name (pkg/msg/Type)")


def ros_type_name(msg_or_type) -> str:
    """``pkg/msg/Type`` of an rclpy message class or instance."""
    cls = msg_or_type if isinstance(msg_or_type, type) else type(msg_or_type)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def _msg_file(full_type: str) -> Path:
    package, _, name = normalize_type(full_type).split("/")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if not prefix:
            continue
        candidate = Path(prefix, "share", package, "msg", f"{name}.msg")
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"definition of {full_type} not found under AMENT_PREFIX_PATH (source scripts/env.sh)"
    )


def _dependencies(full_type: str, text: str) -> list[str]:
    package = normalize_type(full_type).split("/")[0]
    deps = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) < 2:
            continue
        field_type = re.sub(r"\[.*\]$", "", words[0])
        field_type = re.sub(r"<=\d+$", "", field_type)
        if field_type in PRIMITIVES or field_type.startswith(("string<", "wstring<")):
            continue
        if "/" not in field_type:
            field_type = "std_msgs/Header" if field_type == "Header" else f"{package}/{field_type}"
        deps.append(normalize_type(field_type))
    return deps


def message_definition(full_type: str) -> str:
    """The ``ros2msg`` definition of ``pkg/msg/Type`` with every nested type appended once."""
    full_type = normalize_type(full_type)
    root = _msg_file(full_type).read_text()
    blocks, seen, queue = [], {full_type}, list(_dependencies(full_type, root))
    while queue:
        dep = queue.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        text = _msg_file(dep).read_text()
        blocks.append(f"{SEPARATOR}\nMSG: {dep}\n{text}")
        queue += _dependencies(dep, text)
    return "\n".join([root.rstrip("\n"), *(b.rstrip("\n") for b in blocks)]) + "\n"


def has_header(full_type: str) -> bool:
    """Whether the type's first field is a ``std_msgs/Header`` (then its CDR starts with the stamp)."""
    for line in _msg_file(full_type).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return line.split()[0] in ("std_msgs/Header", "Header") and len(line.split()) == 2
    return False


def header_stamp_ns(data: bytes) -> int:
    """``header.stamp`` in ns from the CDR bytes of a message whose first field is a Header."""
    little = data[1] & 1  # encapsulation: 0x0000 CDR_BE, 0x0001 CDR_LE
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


@dataclass(frozen=True)
class QosInfo:
    """What rosbag2 stores per topic as ``offered_qos_profiles`` (the parts a replay needs)."""

    depth: int = 10
    reliable: bool = True
    transient_local: bool = False

    def yaml(self) -> str:
        def never() -> dict:  # a fresh dict each: no YAML anchors in metadata.yaml
            return {"sec": 9223372036, "nsec": 854775807}

        profile = {
            "history": "keep_last",
            "depth": self.depth,
            "reliability": "reliable" if self.reliable else "best_effort",
            "durability": "transient_local" if self.transient_local else "volatile",
            "deadline": never(),
            "lifespan": never(),
            "liveliness": "automatic",
            "liveliness_lease_duration": never(),
            "avoid_ros_namespace_conventions": False,
        }
        import yaml

        return yaml.safe_dump([profile], default_flow_style=False, sort_keys=False)


LATCHED = QosInfo(depth=1, transient_local=True)


class McapRecorder:
    """Append CDR messages to one MCAP file; one schema per type, one channel per topic.

    ``close()`` finishes the file and (``bag_metadata``) writes rosbag2's ``metadata.yaml`` beside it.
    Thread-safe: subscription callbacks of a multi-threaded executor may write concurrently.
    """

    def __init__(self, path: str | Path, bag_metadata: bool = True, custom_data: dict | None = None) -> None:
        from mcap.writer import CompressionType, Writer

        self.path = Path(path)
        self.bag_metadata = bag_metadata
        self.custom_data = {str(k): str(v) for k, v in (custom_data or {}).items()}
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        # lz4: a few ms per 1 MiB chunk, so an image stream does not stall the callbacks
        self._writer = Writer(self._file, compression=CompressionType.LZ4)
        self._writer.start(profile="ros2", library="internvla_ros")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, tuple[int, str, QosInfo]] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.count = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.closed = False

    @staticmethod
    def type_name(msg) -> str:
        return ros_type_name(msg)

    def write(self, topic: str, msg, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        from rclpy.serialization import serialize_message

        self.write_raw(topic, ros_type_name(msg), serialize_message(msg), log_time_ns, publish_time_ns)

    def write_raw(
        self,
        topic: str,
        type_name: str,
        data: bytes,
        log_time_ns: int,
        publish_time_ns: int | None = None,
        qos: QosInfo | None = None,
    ) -> None:
        """Write already-serialized CDR bytes (what a ``raw=True`` subscription delivers)."""
        type_name = normalize_type(type_name)
        with self._lock:
            if self.closed:
                raise RuntimeError(f"{self.path} is closed")
            if type_name not in self._schemas:
                self._schemas[type_name] = self._writer.register_schema(
                    name=type_name, encoding="ros2msg", data=message_definition(type_name).encode()
                )
            if topic not in self._channels:
                qos = qos or QosInfo()
                channel = self._writer.register_channel(
                    topic=topic,
                    message_encoding="cdr",
                    schema_id=self._schemas[type_name],
                    metadata={"offered_qos_profiles": qos.yaml()},
                )
                self._channels[topic] = (channel, type_name, qos)
            channel, known_type, _ = self._channels[topic]
            if known_type != type_name:
                raise ValueError(f"topic {topic} was recorded as {known_type}, now {type_name}")
            publish = log_time_ns if publish_time_ns is None else publish_time_ns
            self._writer.add_message(channel, log_time=log_time_ns, data=data, publish_time=publish)
            self._counts[topic] = self._counts.get(topic, 0) + 1
            self.count += 1
            self.first_ns = log_time_ns if self.first_ns is None else min(self.first_ns, log_time_ns)
            self.last_ns = log_time_ns if self.last_ns is None else max(self.last_ns, log_time_ns)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._writer.finish()
            self._file.close()
        if self.bag_metadata:
            write_bag_metadata(self.path, self._channels, self._counts, self.first_ns, self.last_ns,
                               self.custom_data)  # fmt: skip


def write_bag_metadata(
    mcap_path: Path,
    channels: dict[str, tuple[int, str, QosInfo]],
    counts: dict[str, int],
    first_ns: int | None,
    last_ns: int | None,
    custom_data: dict[str, str],
) -> Path:
    """rosbag2's ``metadata.yaml`` (version 9, one MCAP file) beside ``mcap_path``."""
    import yaml

    start = first_ns or 0
    duration = max(0, (last_ns or 0) - start)
    total = sum(counts.values())
    info = {
        "version": 9,
        "storage_identifier": "mcap",
        "relative_file_paths": [mcap_path.name],
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": total,
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": topic,
                    "type": type_name,
                    "serialization_format": "cdr",
                    "offered_qos_profiles": yaml.safe_load(qos.yaml()),
                    "type_description_hash": "",
                },
                "message_count": counts.get(topic, 0),
            }
            for topic, (_, type_name, qos) in channels.items()
        ],
        "compression_format": "",
        "compression_mode": "",
        "files": [
            {
                "path": mcap_path.name,
                "starting_time": {"nanoseconds_since_epoch": start},
                "duration": {"nanoseconds": duration},
                "message_count": total,
            }
        ],
        "custom_data": custom_data or None,
        "ros_distro": os.environ.get("ROS_DISTRO", "kilted"),
    }
    path = mcap_path.parent / "metadata.yaml"
    tmp = path.with_suffix(".yaml.partial")
    tmp.write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------- topics
@dataclass(frozen=True)
class TopicSpec:
    """One recorded topic: name (relative or absolute), ``module.Class`` of its type, latched or not."""

    topic: str
    type: str  # "sensor_msgs/msg/Image"
    latched: bool = False
    depth: int = 50
    optional_module: bool = False  # skipped (not an error) when the type's Python module is absent

    def message_class(self):
        import importlib

        package, _, name = normalize_type(self.type).split("/")
        return getattr(importlib.import_module(f"{package}.msg"), name)


# Every topic of docs/graph-contract.md a simulated run produces (the README's "every topic"). /tf and
# /tf_static exist where tf2_msgs is installed (full ROS installs; the sim publishes them there).
SIM_TOPICS = (
    TopicSpec("camera/image_raw", "sensor_msgs/msg/Image"),
    TopicSpec("camera/depth/image_raw", "sensor_msgs/msg/Image"),
    TopicSpec("camera/camera_info", "sensor_msgs/msg/CameraInfo"),
    TopicSpec("wrist_camera/image_raw", "sensor_msgs/msg/Image"),
    TopicSpec("wrist_camera/camera_info", "sensor_msgs/msg/CameraInfo"),
    TopicSpec("joint_states", "sensor_msgs/msg/JointState"),
    TopicSpec("ee_pose", "geometry_msgs/msg/PoseStamped"),
    TopicSpec("instruction", "std_msgs/msg/String"),
    TopicSpec("task/instruction", "std_msgs/msg/String", latched=True),
    TopicSpec("task/success", "std_msgs/msg/Bool", latched=True),
    TopicSpec("grounding", "internvla_msgs/msg/Grounding"),
    TopicSpec("grounding/debug_image", "sensor_msgs/msg/Image"),
    TopicSpec("grounding/markers", "visualization_msgs/msg/MarkerArray"),
    TopicSpec("action_chunk", "internvla_msgs/msg/ActionChunk"),
    TopicSpec("arm_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory"),
    TopicSpec("gripper/command", "std_msgs/msg/Float64"),
    TopicSpec("gripper_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory"),  # WidowX sim
    TopicSpec("executor/preview", "trajectory_msgs/msg/JointTrajectory"),
    TopicSpec("executor/preview_pose", "geometry_msgs/msg/PoseStamped"),
    TopicSpec("chunk_executor/status", "internvla_msgs/msg/ExecutorStatus"),
    TopicSpec("estop", "std_msgs/msg/Bool"),
    TopicSpec("robot_description", "std_msgs/msg/String", latched=True),
    TopicSpec("/clock", "rosgraph_msgs/msg/Clock", depth=100),
    TopicSpec("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray"),
    TopicSpec("/tf", "tf2_msgs/msg/TFMessage", depth=100, optional_module=True),
    TopicSpec("/tf_static", "tf2_msgs/msg/TFMessage", latched=True, optional_module=True),
)


def available_topics(specs: Iterable[TopicSpec]) -> list[TopicSpec]:
    """The specs whose message type can be imported here (optional ones are dropped, others raise)."""
    out = []
    for spec in specs:
        try:
            spec.message_class()
        except (ImportError, AttributeError):
            if spec.optional_module:
                continue
            raise
        out.append(spec)
    return out


class TopicRecorder:
    """Raw subscriptions on ``node`` for each spec; every message goes to the current McapRecorder.

    ``log_time`` is the node's clock at reception (give the node ``use_sim_time`` in simulation). While
    that clock reads 0, messages wait and are logged at its first non-zero reading (see module doc).
    ``on_message(topic, msg_class, data, stamp_ns)`` is called for every message (recording or not).
    """

    def __init__(
        self,
        node,
        specs: Iterable[TopicSpec],
        on_message: Callable[[str, type, bytes, int], None] | None = None,
        callback_group=None,
    ) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile

        self.node = node
        self.specs = list(specs)
        self.on_message = on_message
        self._lock = threading.Lock()
        self._recorder: McapRecorder | None = None
        self._pending: list[tuple[str, str, bytes, int, QosInfo]] = []
        self._subscriptions = []
        for spec in self.specs:
            cls = spec.message_class()
            type_name = normalize_type(spec.type)
            header = has_header(type_name)
            qos_info = LATCHED if spec.latched else QosInfo(depth=spec.depth)
            qos = (
                QoSProfile(depth=spec.depth, durability=DurabilityPolicy.TRANSIENT_LOCAL)
                if spec.latched
                else QoSProfile(depth=spec.depth)
            )
            # the MCAP channel carries the fully qualified name, as rosbag2 records it
            resolved = node.resolve_topic_name(spec.topic)
            self._subscriptions.append(
                node.create_subscription(
                    cls,
                    spec.topic,
                    self._callback(spec.topic, resolved, cls, type_name, header, qos_info),
                    qos,
                    raw=True,
                    callback_group=callback_group,
                )
            )

    def _callback(self, topic: str, resolved: str, cls, type_name: str, header: bool, qos: QosInfo):
        def callback(data: bytes) -> None:
            receive_ns = self.node.get_clock().now().nanoseconds
            stamp_ns = header_stamp_ns(data) if header else None
            if self.on_message is not None:
                self.on_message(topic, cls, data, stamp_ns if stamp_ns is not None else receive_ns)
            with self._lock:
                recorder = self._recorder
                if recorder is None:
                    return
                if receive_ns <= 0:
                    self._pending.append((resolved, type_name, data, stamp_ns, qos))
                    return
                for p_topic, p_type, p_data, p_stamp, p_qos in self._pending:
                    recorder.write_raw(p_topic, p_type, p_data, receive_ns, p_stamp, p_qos)
                self._pending.clear()
                recorder.write_raw(resolved, type_name, data, receive_ns, stamp_ns, qos)

        return callback

    def start(self, recorder: McapRecorder) -> None:
        with self._lock:
            self._recorder = recorder
            self._pending.clear()

    def stop(self) -> McapRecorder | None:
        """Detach the current recorder. Messages still waiting for a non-zero clock are logged at the
        last time the recorder wrote (1 ns if it wrote nothing: the clock never started)."""
        with self._lock:
            recorder, self._recorder = self._recorder, None
            if recorder is not None and self._pending:
                at = recorder.last_ns or 1
                for p_topic, p_type, p_data, p_stamp, p_qos in self._pending:
                    recorder.write_raw(p_topic, p_type, p_data, at, p_stamp, p_qos)
            self._pending.clear()
        return recorder

    def destroy(self) -> None:
        for sub in self._subscriptions:
            self.node.destroy_subscription(sub)
        self._subscriptions.clear()
