"""Recorded episodes (MCAP, rosbag2 layout or bare file) -> :class:`~internvla_learning.episode.Episode`.

    python -m internvla_learning.mcap_convert --contract CONTRACT.yaml --out STAGING_DIR BAG [BAG ...]

Pure Python (no rclpy): messages are decoded from their CDR bytes with ``rosbags``, using the ``ros2msg``
schemas stored in the file itself. The recording contract (``internvla_bringup/config/recording/*.yaml``)
names the streams and the control rate. Alignment is by stamp, never by arrival: the control ticks are
``t_k = t_0 + k / fps`` from the first to the last commanded joint trajectory (header stamps); for each
tick every stamped stream (images, joint_states, ee_pose, trajectories) contributes the sample whose
``header.stamp`` is nearest to ``t_k``, and it must lie within ``stamp_tolerance_s``. The gripper command
(std_msgs/Float64, no header) is a held command: the last one received (log time on the graph clock) at or
before ``t_k + tolerance``.

Actions follow the Episode conventions: ``action_joint[k]`` = the commanded arm joints of tick k (the
trajectory's setpoint one control period after its stamp: the executor sends the current setpoint at 0
and the tick's target at one period; in the contract's joint order) and the gripper command; ``action_ee_delta[k]`` =
``delta_between(FK(q_cmd[k-1]), FK(q_cmd[k]))`` in the embodiment's reference frame, the first relative
to FK of the measured joints at tick 0.

Bad input is refused with a :class:`ConvertError` that names the problem, and nothing is written for
that bag: a truncated file (how far it could be read), a missing topic (and the contract line naming
it), a gap beyond the tolerance (the tick's time), NaN in a state (the frame), an existing output file
(unless ``--overwrite``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .episode import Episode, save_episode


class ConvertError(ValueError):
    """A bag that cannot be converted; the message says why and where."""


# ------------------------------------------------------------------------------------------ contract
@dataclass
class Contract:
    path: Path
    data: dict
    lines: dict[str, int]  # topic -> line number in the contract file

    @classmethod
    def load(cls, path: str | Path) -> Contract:
        import yaml

        path = Path(path)
        text = path.read_text()
        data = yaml.safe_load(text)
        required = ("robot", "fk_model", "embodiment", "reference_frame", "fps", "stamp_tolerance_s",
                    "observations", "actions")  # fmt: skip
        missing = [k for k in required if k not in data]
        if missing:
            raise ConvertError(f"{path}: contract lacks {missing}")
        lines = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if "topic:" in line:
                topic = line.split("topic:", 1)[1].split(",")[0].split("}")[0].strip()
                lines.setdefault(topic, number)
        return cls(path, data, lines)

    def where(self, topic: str) -> str:
        return f"{self.path.name}:{self.lines.get(topic, '?')}"

    @property
    def fps(self) -> float:
        return float(self.data["fps"])

    @property
    def tolerance_ns(self) -> int:
        return int(round(float(self.data["stamp_tolerance_s"]) * 1e9))

    @property
    def joint_state(self) -> dict:
        return self.data["observations"]["joint_state"]

    @property
    def images(self) -> dict:
        return self.data["observations"].get("images") or {}

    @property
    def ee_pose(self) -> dict | None:
        return self.data["observations"].get("ee_pose")

    @property
    def trajectory(self) -> dict:
        return self.data["actions"]["joint_trajectory"]

    @property
    def gripper(self) -> dict:
        return self.data["actions"]["gripper"]


# ------------------------------------------------------------------------------------------ reading
@dataclass
class Stream:
    stamps: np.ndarray  # int64 ns (header stamp, or log time for header-less types)
    log_times: np.ndarray  # int64 ns
    messages: list


def mcap_file(bag: Path) -> Path:
    if bag.is_dir():
        files = sorted(bag.glob("*.mcap"))
        if len(files) != 1:
            raise ConvertError(f"{bag}: expected one .mcap file in the bag directory, found {len(files)}")
        return files[0]
    if not bag.exists():
        raise ConvertError(f"{bag}: no such file")
    return bag


def readable_extent(path: Path) -> tuple[int, int, int | None]:
    """(bytes read, complete messages, last log time) of a damaged MCAP, streaming record by record."""
    from mcap.records import Message
    from mcap.stream_reader import StreamReader

    count, last, offset = 0, None, 0
    with open(path, "rb") as stream:
        try:
            for record in StreamReader(stream, skip_magic=False).records:
                if isinstance(record, Message):
                    count += 1
                    last = record.log_time
                offset = stream.tell()
        except Exception:
            pass
    return offset, count, last


def _damaged(path: Path, what: str, exc: Exception) -> ConvertError:
    """The error for an MCAP that stops being readable: how far it reads, and that nothing was converted."""
    offset, count, last = readable_extent(path)
    last_text = f"{last / 1e9:.3f} s" if last is not None else "none"
    return ConvertError(
        f"{path}: {what} ({type(exc).__name__}: {exc}); readable up to byte {offset} of "
        f"{path.stat().st_size}: {count} complete messages, last log time {last_text}; nothing converted"
    )


def read_streams(bag: Path, topics: dict[str, str]) -> tuple[dict[str, Stream], dict[str, str]]:
    """Decode the contract's topics (``{contract topic: expected type}``) from ``bag``.

    Returns the streams by contract topic and every channel's type by recorded name.
    """
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    path = mcap_file(bag)
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:
        raise _damaged(path, "truncated or damaged MCAP", exc) from None
    try:
        typestore = get_typestore(Stores.EMPTY)
        channels = {c.topic: c.msgtype for c in reader.connections}
        chosen = {}
        for want, expected in topics.items():
            match = resolve_topic(want, channels)
            if match is not None:
                if channels[match] != expected:
                    raise ConvertError(f"{path}: {match} is {channels[match]}, the contract says {expected}")
                chosen[match] = want
        for connection in reader.connections:
            if connection.topic in chosen:
                if not connection.msgdef.data:
                    raise ConvertError(f"{path}: {connection.topic} has no message definition in the file")
                typestore.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
        connections = [c for c in reader.connections if c.topic in chosen]
        raw: dict[str, list] = {want: [] for want in topics}
        try:
            for connection, log_time, data in reader.messages(connections=connections):
                msg = typestore.deserialize_cdr(data, connection.msgtype)
                header = getattr(msg, "header", None)
                stamp = (
                    header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
                    if header is not None
                    else log_time
                )
                raw[chosen[connection.topic]].append((stamp, log_time, msg))
        except ConvertError:
            raise
        except Exception as exc:
            raise _damaged(path, "damaged MCAP while reading messages", exc) from None
    finally:
        reader.close()
    streams = {}
    for want, items in raw.items():
        items.sort(key=lambda item: (item[0], item[1]))
        streams[want] = Stream(
            np.array([i[0] for i in items], dtype=np.int64),
            np.array([i[1] for i in items], dtype=np.int64),
            [i[2] for i in items],
        )
    return streams, channels


def resolve_topic(want: str, channels: dict[str, str]) -> str | None:
    """The recorded name of a contract topic: exact, or a relative name under any namespace."""
    if want in channels:
        return want
    if want.startswith("/"):
        return None
    matches = [name for name in channels if name == f"/{want}" or name.endswith(f"/{want}")]
    return min(matches, key=len) if matches else None


# ------------------------------------------------------------------------------------------ alignment
def nearest(stream: Stream, tick_ns: int, tolerance_ns: int) -> int | None:
    """Index of the sample with the stamp nearest ``tick_ns`` if within the tolerance, else None."""
    if len(stream.stamps) == 0:
        return None
    i = int(np.searchsorted(stream.stamps, tick_ns))
    candidates = [j for j in (i - 1, i) if 0 <= j < len(stream.stamps)]
    best = min(candidates, key=lambda j: abs(int(stream.stamps[j]) - tick_ns))
    return best if abs(int(stream.stamps[best]) - tick_ns) <= tolerance_ns else None


def held(stream: Stream, tick_ns: int, tolerance_ns: int) -> int | None:
    """Index of the last command received at or before ``tick_ns + tolerance`` (None before the first)."""
    i = int(np.searchsorted(stream.log_times, tick_ns + tolerance_ns, side="right")) - 1
    return i if i >= 0 else None


def image_array(msg, name: str, spec: dict, frame: int) -> np.ndarray:
    encoding = msg.encoding.lower()
    if encoding not in ("rgb8", "bgr8"):
        raise ConvertError(f"images[{name}] frame {frame}: encoding {msg.encoding}, expected rgb8 or bgr8")
    if (spec.get("width"), spec.get("height")) not in ((None, None), (msg.width, msg.height)):
        raise ConvertError(
            f"images[{name}] frame {frame}: {msg.width}x{msg.height}, the contract says "
            f"{spec['width']}x{spec['height']}"
        )
    data = np.asarray(msg.data, dtype=np.uint8)
    rows = data[: msg.height * msg.step].reshape(msg.height, msg.step)[:, : msg.width * 3]
    image = rows.reshape(msg.height, msg.width, 3)
    return np.ascontiguousarray(image[..., ::-1] if encoding == "bgr8" else image)


def _fk_solver(model: str):
    from internvla_core.kinematics import IKSolver
    from internvla_core.robot_assets import robot_description

    return IKSolver.from_description(robot_description(model))


def convert_bag(bag: str | Path, contract: Contract, fk=None) -> Episode:
    """One recorded episode -> Episode (ConvertError naming the problem on bad input)."""
    from internvla_core.embodiments.base import delta_between
    from internvla_core.rotations import matrix_to_rpy, quaternion_to_matrix

    bag = Path(bag)
    js, traj, grip = contract.joint_state, contract.trajectory, contract.gripper
    wanted = {js["topic"]: js["type"], traj["topic"]: traj["type"], grip["topic"]: grip["type"]}
    for spec in contract.images.values():
        wanted[spec["topic"]] = spec["type"]
    if contract.ee_pose:
        wanted[contract.ee_pose["topic"]] = contract.ee_pose["type"]
    streams, channels = read_streams(bag, wanted)
    for topic, stream in streams.items():
        if topic == grip["topic"]:
            continue  # a held command: "initial" until the first one
        if len(stream.stamps) == 0:
            present = "absent" if resolve_topic(topic, channels) is None else "recorded without messages"
            raise ConvertError(
                f"{bag}: topic {topic} ({contract.where(topic)}) is {present}; recorded topics: "
                f"{sorted(channels)}"
            )
    tol = contract.tolerance_ns
    period = 1e9 / contract.fps
    commands = streams[traj["topic"]]
    t0, t_end = int(commands.stamps[0]), int(commands.stamps[-1])
    n = int(np.floor((t_end - t0 + tol) / period)) + 1
    ticks = [t0 + int(round(k * period)) for k in range(n)]

    arm = list(js["arm_joints"])
    fingers = list(js.get("gripper_joints") or [])
    closed = np.asarray(js.get("gripper_closed") or [0.0] * len(fingers), dtype=np.float64)
    opened = np.asarray(js.get("gripper_open") or [1.0] * len(fingers), dtype=np.float64)

    def sample(topic: str, k: int, tick: int):
        index = nearest(streams[topic], tick, tol)
        if index is None:
            stamps = streams[topic].stamps
            near = stamps[np.argmin(np.abs(stamps - tick))] / 1e9
            raise ConvertError(
                f"{bag}: gap in {topic} ({contract.where(topic)}): no sample within "
                f"{tol / 1e9:.3f} s of tick {k} at t={tick / 1e9:.3f} s (nearest stamp {near:.3f} s)"
            )
        return streams[topic].messages[index]

    def positions(msg, names: list[str], what: str, k: int) -> np.ndarray:
        names_in_msg = msg.name if hasattr(msg, "name") else msg.joint_names
        values = dict(zip(names_in_msg, _first_positions(msg, 1.0 / contract.fps)))
        missing = [j for j in names if j not in values]
        if missing:
            raise ConvertError(f"{bag}: {what} at frame {k} lacks joints {missing}")
        return np.array([values[j] for j in names], dtype=np.float64)

    fk = fk or _fk_solver(contract.data["fk_model"])
    frame = contract.data["reference_frame"]
    state_joint, state_ee, action_joint, action_ee = [], [], [], []
    images: dict[str, list[np.ndarray]] = {name: [] for name in contract.images}
    previous_target = None
    for k, tick in enumerate(ticks):
        joint_msg = sample(js["topic"], k, tick)
        q = positions(joint_msg, arm, "joint_states", k)
        finger = positions(joint_msg, fingers, "joint_states", k) if fingers else np.zeros(0)
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(finger))):
            raise ConvertError(f"{bag}: NaN in joint_states at frame {k} (t={tick / 1e9:.3f} s)")
        opening = float(np.clip(np.mean((finger - closed) / (opened - closed)), 0.0, 1.0)) if fingers else 0.0
        if contract.ee_pose:
            pose_msg = sample(contract.ee_pose["topic"], k, tick).pose
            p, o = pose_msg.position, pose_msg.orientation
            pose = np.eye(4)
            pose[:3, :3] = quaternion_to_matrix(np.array([o.x, o.y, o.z, o.w]))
            pose[:3, 3] = [p.x, p.y, p.z]
        else:
            pose = fk.fk(q)
        if not np.all(np.isfinite(pose)):
            raise ConvertError(f"{bag}: NaN in ee_pose at frame {k} (t={tick / 1e9:.3f} s)")
        state_joint.append(q)
        state_ee.append([*pose[:3, 3], *matrix_to_rpy(pose[:3, :3]), opening])
        q_cmd = positions(sample(traj["topic"], k, tick), arm, traj["topic"], k)
        if not np.all(np.isfinite(q_cmd)):
            raise ConvertError(f"{bag}: NaN in the commanded joints at frame {k} (t={tick / 1e9:.3f} s)")
        g_index = held(streams[grip["topic"]], tick, tol)
        gripper = (
            float(grip.get("initial", 1.0))
            if g_index is None
            else float(streams[grip["topic"]].messages[g_index].data)
        )
        target = fk.fk(q_cmd)
        if previous_target is None:
            previous_target = fk.fk(q)  # the first delta: from the measured pose at the first tick
        action_ee.append([*delta_between(previous_target, target, frame), gripper])
        action_joint.append([*q_cmd, gripper])
        previous_target = target
        for name, spec in contract.images.items():
            images[name].append(image_array(sample(spec["topic"], k, tick), name, spec, k))

    episode = Episode(
        robot=contract.data["robot"],
        embodiment=contract.data["embodiment"],
        reference_frame=frame,
        instruction="",
        task_template="ros_recording",
        seed=-1,
        fps=contract.fps,
        timestamps=(np.array(ticks, dtype=np.int64) - t0).astype(np.float64) / 1e9,
        images={name: np.stack(stack) for name, stack in images.items()},
        joint_names=tuple(arm),
        state_joint=np.asarray(state_joint, dtype=np.float32),
        state_ee=np.asarray(state_ee, dtype=np.float32),
        action_ee_delta=np.asarray(action_ee, dtype=np.float32),
        action_joint=np.asarray(action_joint, dtype=np.float32),
        success=False,
        metadata={"source": str(bag), "contract": contract.path.name, "t0_ns": t0},
    )
    sidecar = sidecar_of(bag)
    if sidecar is not None:
        info = json.loads(sidecar.read_text())
        episode.instruction = str(info.get("task", ""))
        episode.success = bool(info.get("success"))
        episode.metadata["sidecar"] = info
    try:
        episode.validate()
    except ValueError as exc:
        raise ConvertError(f"{bag}: {exc}") from None
    return episode


def _first_positions(msg, period_s: float = 0.0):
    """JointState: the positions. JointTrajectory: the setpoint it commands one control period after
    its stamp (the executor sends the current setpoint at 0, this tick's target at one period, and the
    rest of a chunk after it; a single point is the target), linear between knots, the last point after
    the end."""
    if hasattr(msg, "position"):  # JointState
        return list(msg.position)
    if not msg.points:  # JointTrajectory
        return [float("nan")] * len(msg.joint_names)
    times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
    positions = np.array([np.asarray(p.positions, dtype=np.float64) for p in msg.points])
    if len(times) == 1 or period_s >= times[-1] - 1e-9:
        return list(positions[-1])
    if period_s <= times[0] + 1e-9:
        return list(positions[0])
    i = int(np.searchsorted(times, period_s, side="right"))
    w = (period_s - times[i - 1]) / max(times[i] - times[i - 1], 1e-12)
    return list((1.0 - w) * positions[i - 1] + w * positions[i])


def sidecar_of(bag: Path) -> Path | None:
    """The recorder's ``episode.json`` beside the bag (in a bag directory, or next to a bare file)."""
    for candidate in (bag / "episode.json", bag.parent / "episode.json", bag.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def output_name(bag: Path) -> str:
    return (bag.name if bag.is_dir() else bag.stem) + ".npz"


def convert(
    bags: list[str | Path], contract_path: str | Path, out: str | Path, overwrite: bool = False
) -> dict:
    """Convert each bag to ``out/<bag name>.npz``; returns {bag: output path or error text}."""
    contract = Contract.load(contract_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, str] = {}
    fk = _fk_solver(contract.data["fk_model"])
    for bag in map(Path, bags):
        target = out / output_name(bag)
        if target.exists() and not overwrite:
            results[str(bag)] = f"error: {target} exists (pass --overwrite to replace it)"
            continue
        try:
            episode = convert_bag(bag, contract, fk)
        except ConvertError as exc:
            results[str(bag)] = f"error: {exc}"
            continue
        save_episode(episode, target)  # atomic: written whole or not at all
        results[str(bag)] = str(target)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contract", required=True, help="recording contract YAML")
    parser.add_argument("--out", required=True, help="staging directory for the episode .npz files")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("bags", nargs="+", help="bag directories (metadata.yaml + .mcap) or .mcap files")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results = convert(args.bags, args.contract, args.out, args.overwrite)
    failed = 0
    frames = 0
    for bag, result in results.items():
        if result.startswith("error: "):
            failed += 1
            print(f"{bag}: {result}", file=sys.stderr)
        else:
            with np.load(result) as data:
                frames += int(data["timestamps"].shape[0])
            print(f"{bag} -> {result}")
    seconds = time.perf_counter() - t0
    print(f"{len(results) - failed} converted, {failed} refused; {frames} frames in {seconds:.2f} s "
          f"({frames / max(seconds, 1e-9):.1f} frames/s)")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
