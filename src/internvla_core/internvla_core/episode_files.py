"""The files of a recorded episode, without ROS: the contract's topics, episode directories, sidecars.

A recorder writes one directory per episode below its output directory, ``episode_NNNNNN`` (the next
free number; an existing directory is never reused or overwritten), holding the bag and
``episode.json``: task, contract, success, note, message count, duration, why it stopped. JSON files
are replaced atomically, so a reader (or a crash) never sees half a sidecar.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def contract_entries(contract: dict) -> list[dict[str, Any]]:
    """Every topic a recording contract names (features first, then ``extra_topics``), once each:
    dicts with topic, type, latched, optional."""
    obs, actions = contract["observations"], contract["actions"]
    features = [*(obs.get("images") or {}).values(), obs["joint_state"]]
    if obs.get("ee_pose"):
        features.append(obs["ee_pose"])
    features += [actions["joint_trajectory"], actions["gripper"]]
    entries = [{**entry, "optional": False} for entry in features]
    entries += [
        {**entry, "optional": bool(entry.get("optional", False))}
        for entry in contract.get("extra_topics") or []
    ]
    seen, unique = set(), []
    for entry in entries:
        if entry["topic"] not in seen:
            seen.add(entry["topic"])
            unique.append(
                {
                    "topic": entry["topic"],
                    "type": entry["type"],
                    "latched": bool(entry.get("latched", False)),
                    "optional": entry["optional"],
                }
            )
    return unique


def resolve_contract(name: str, recording_dir: Path) -> Path:
    """A contract path, or a setup name looked up as ``<recording_dir>/<name>.yaml``; raises
    ValueError saying what to give when there is none."""
    if not name:
        raise ValueError("parameter 'contract' is empty (a path or a setup name such as sim_franka)")
    path = Path(name)
    if not path.suffix:
        path = recording_dir / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"contract {path} does not exist")
    return path


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON, replacing the file atomically."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def next_episode_directory(output_dir: Path) -> Path:
    """Create and return ``episode_NNNNNN`` after the highest existing number (never an existing one)."""
    existing = [int(p.name[8:]) for p in output_dir.glob("episode_*") if p.name[8:].isdigit()]
    index = max(existing, default=-1) + 1
    while True:
        path = output_dir / f"episode_{index:06d}"
        try:
            path.mkdir()  # fails if it exists: never reuse an episode's directory
            return path
        except FileExistsError:
            index += 1


def new_sidecar(task: str, contract_name: str, setup: str, now_unix: float) -> dict[str, Any]:
    """The sidecar of an episode just opened (success unknown until marked)."""
    return {
        "task": task,
        "success": None,
        "note": "",
        "contract": contract_name,
        "setup": setup,
        "started_unix": now_unix,
    }


def mark_sidecar_file(path: Path, success: bool, note: str) -> None:
    """Label a stopped episode's sidecar (``path`` is its episode.json)."""
    sidecar = json.loads(path.read_text())
    sidecar.update(success=bool(success), note=note)
    write_json(path, sidecar)


def over_duration(start_ns: int, now_ns: int, max_duration_s: float) -> bool:
    """True when an episode started at ``start_ns`` ran past its limit (0 = no limit), graph clock."""
    return max_duration_s > 0 and (now_ns - start_ns) / 1e9 > max_duration_s
