"""Record ROS messages to MCAP (ros2 bag / Foxglove readable) without rosbag2.

Messages are stored as the CDR bytes rclpy produces (``serialize_message``) on channels with the
``ros2msg`` schema encoding; the schema text is the message definition with its dependencies appended
("=====\nMSG: pkg/Type" blocks), built from the ``.msg`` files the interface packages install.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "string", "wstring",
}  # fmt: skip


def _msg_file(full_type: str) -> Path:
    package, name = full_type.split("/")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix, "share", package, "msg", f"{name}.msg")
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"definition of {full_type} not found under AMENT_PREFIX_PATH (source scripts/env.sh)"
    )


def _dependencies(full_type: str, text: str) -> list[str]:
    package = full_type.split("/")[0]
    deps = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line.split()[0]:
            continue
        field_type = re.sub(r"\[.*\]$", "", line.split()[0])
        field_type = re.sub(r"<=\d+$", "", field_type)
        if field_type in PRIMITIVES or field_type.startswith(("string<", "wstring<")):
            continue
        if "/" not in field_type:
            field_type = "std_msgs/Header" if field_type == "Header" else f"{package}/{field_type}"
        deps.append(field_type)
    return deps


def message_definition(full_type: str) -> str:
    """The ros2msg definition of ``pkg/Type`` with every nested type appended once."""
    root = _msg_file(full_type).read_text()
    blocks, seen, queue = [], {full_type}, list(_dependencies(full_type, root))
    while queue:
        dep = queue.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        text = _msg_file(dep).read_text()
        blocks.append(f"{'=' * 80}\nMSG: {dep}\n{text}")
        queue += _dependencies(dep, text)
    return "\n".join([root, *blocks])


class McapRecorder:
    """Append (topic, message, time) to an MCAP file; one schema and channel per type/topic."""

    def __init__(self, path: str | Path) -> None:
        from mcap.writer import Writer

        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = Writer(self._file)
        self._writer.start(profile="ros2", library="internvla_ros")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self.count = 0

    @staticmethod
    def type_name(msg) -> str:
        module = type(msg).__module__.split(".")[0]
        return f"{module}/{type(msg).__name__}"

    def write(self, topic: str, msg, time_ns: int) -> None:
        from rclpy.serialization import serialize_message

        self.write_raw(topic, self.type_name(msg), serialize_message(msg), time_ns)

    def write_raw(self, topic: str, type_name: str, data: bytes, time_ns: int) -> None:
        """Write already-serialized CDR bytes (what a ``raw=True`` subscription delivers)."""
        if type_name not in self._schemas:
            self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding="ros2msg", data=message_definition(type_name).encode()
            )
        if topic not in self._channels:
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=self._schemas[type_name]
            )
        self._writer.add_message(self._channels[topic], log_time=time_ns, data=data, publish_time=time_ns)
        self.count += 1

    def close(self) -> None:
        self._writer.finish()
        self._file.close()
