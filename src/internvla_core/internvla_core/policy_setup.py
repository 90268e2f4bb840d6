"""What the policy node builds on configure, decided without ROS: views, image topics, backend, RTC.

The node passes its parameters (any object with the attributes named below, e.g. the schema's
params namespace) and a ``warn`` callable for its logger; the checks raise ValueError with a text
that says what to change, which the node reports as its failed configure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRIST_VIEW = "wrist"


def policy_views(embodiment_views: Sequence[str], wrist_view: bool) -> list[str]:
    """The embodiment's views, plus the wrist camera as a second view when asked and not already one."""
    views = list(embodiment_views)
    if wrist_view and WRIST_VIEW not in views:
        views.append(WRIST_VIEW)
    return views


def trained_views(config: Mapping[str, Any]) -> list[str] | None:
    """The camera views a run was trained on, in order (``datasets.vla_data.cameras``, written by
    internvla-train); None when the config does not say (upstream's released runs)."""
    vla = (config.get("datasets") or {}).get("vla_data") or {}
    cameras = vla.get("cameras")
    return [str(c) for c in cameras] if cameras else None


def local_checkpoint_views(checkpoint: str) -> list[str] | None:
    """The views a checkpoint on this disk (a run dir or one of its weight files) was trained on.

    None when the checkpoint is empty, not a local path (a hub id: reading it could download) or its
    config does not say. Launch descriptions use it to render and send the views the model expects.
    """
    run = local_run_dir(checkpoint)
    if run is None:
        return None
    from .model.config import load_run_config  # torch-free: launch descriptions call this

    return trained_views(load_run_config(run).raw)


def local_run_dir(checkpoint: str) -> Path | None:
    """The run directory of a checkpoint on this disk (a run dir or one of its weight files); None when
    the checkpoint is empty or not a local path (a hub id: reading it could download)."""
    if not checkpoint:
        return None
    path = Path(os.path.expanduser(checkpoint))
    if not path.exists():
        return None
    from .model.config import run_dir_of

    return path if path.is_dir() else run_dir_of(path)


MODEL_CARD = "model_card.json"  # written beside a run's config by internvla_learning.export_model
# model-card entries that are node parameters: card key -> node (the card's "executor" block goes to
# chunk_executor whole)
CARD_NODE_KEYS = {"cfg_scale": "policy_node"}


def local_model_card(checkpoint: str) -> dict | None:
    """The model card of a checkpoint on this disk (a run dir or one of its weight files): the JSON that
    ``export_model`` writes, with the settings the model's evaluation ran with. None when the checkpoint is
    empty, not a local path, or has no card (a user's own run, upstream's releases)."""
    run = local_run_dir(checkpoint)
    card = run / MODEL_CARD if run is not None else None
    if card is None or not card.is_file():
        return None
    import json

    try:
        return json.loads(card.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{card} is not valid JSON ({error}); re-export the model or delete the card"
        ) from None


def card_node_parameters(card: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per node, the parameters a model card says the model was evaluated with: ``cfg_scale`` for
    policy_node, the ``executor`` block (e.g. ``gripper_commit_steps``) for chunk_executor. A model's
    success rate holds only at those settings (the shipped pick_green model: cfg 3.0 and an 8-step gripper
    commitment, policy_node's and chunk_executor's defaults are 1.5 and 0). Raises ValueError on a value
    that is not a number or a flag."""
    nodes: dict[str, dict[str, Any]] = {}
    if not card:
        return nodes
    entries = [(node, key, card[key]) for key, node in CARD_NODE_KEYS.items() if card.get(key) is not None]
    executor = card.get("executor") or {}
    if not isinstance(executor, Mapping):
        raise ValueError(
            f"model card 'executor' must be a mapping of chunk_executor parameters, not {executor!r}"
        )
    entries += [("chunk_executor", str(key), value) for key, value in executor.items()]
    for node, key, value in entries:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"model card {node}.{key} must be a number, not {value!r}")
        nodes.setdefault(node, {})[key] = value
    return nodes


def check_views_fit_model(views: Sequence[str], trained: Sequence[str] | None) -> None:
    """A model trained on N views must get N: with one view missing it still answers, with actions
    for a scene it has never seen (nothing fails, the arm just moves wrongly). Raises ValueError."""
    if trained is None or len(trained) == len(views):
        return
    hint = (
        "set wrist_view: true"
        if WRIST_VIEW in trained and WRIST_VIEW not in views
        else "set wrist_view: false"
        if WRIST_VIEW in views and WRIST_VIEW not in trained
        else "use a model trained on this embodiment's views"
    )
    raise ValueError(
        f"the model was trained on {len(trained)} view(s) {list(trained)}, the node would send "
        f"{len(views)} {list(views)}: {hint}"
    )


def image_topics(views: Sequence[str], topics: Mapping[str, str], embodiment: str) -> dict[str, str]:
    """The image topic of every view; a view without a topic parameter is a configuration error."""
    missing = [view for view in views if view not in topics]
    if missing:
        raise ValueError(
            f"embodiment '{embodiment}' uses view '{missing[0]}', which has no image topic parameter "
            f"(known: {sorted(topics)})"
        )
    return {view: topics[view] for view in views}


def torch_thread_count(setting: int, device: str, cpu_count: int | None) -> int | None:
    """Threads for torch in this process, or None to keep torch's default.

    -1: cores - 1 on CPU (one core stays free for the control loop), torch's default on a GPU;
    0: torch's default; n > 0: n.
    """
    if setting == -1:
        if not str(device).startswith("cpu"):
            return None
        return max(1, (cpu_count or 2) - 1)
    return setting if setting > 0 else None


@dataclass
class PolicyModel:
    """The backend the goals query, and the shared local policy it holds (None for remote)."""

    backend: Any
    policy: Any = None

    def close(self) -> None:
        """Free the backend and release the shared policy (the registry frees it, CUDA cache included)."""
        self.backend.close()
        if self.policy is not None:
            from .model import release

            release(self.policy)
            self.policy = None


def checkpoint_or_tiny(checkpoint: str, warn: Callable[[str], None]) -> str:
    """The checkpoint to load: the given one, or (empty) the untrained tiny factory model, said once."""
    if checkpoint:
        return checkpoint
    from .model import tiny_checkpoint

    checkpoint = str(tiny_checkpoint())
    warn(f"no checkpoint given: using the untrained tiny factory model {checkpoint}")
    return checkpoint


def load_policy_model(params, warn: Callable[[str], None], info: Callable[[str], None]) -> PolicyModel:
    """The local model (shared through the registry) or a connected remote client.

    ``params`` needs backend, remote_url, remote_api_key, dataset_statistics, checkpoint, device,
    dtype, spatial_prompt, torch_threads, gil_switch_interval.
    """
    from .backends import LocalBackend, RemoteBackend

    if params.backend == "remote":
        from .remote import RemotePolicyClient

        if not params.dataset_statistics:
            raise ValueError(
                "backend remote needs dataset_statistics (the served checkpoint's dataset_statistics.json)"
            )
        client = RemotePolicyClient(params.remote_url, params.remote_api_key or None)
        client.connect()
        return PolicyModel(RemoteBackend(client, params.dataset_statistics))
    if params.backend != "local":
        raise ValueError(f"backend must be local or remote, got '{params.backend}'")
    import torch

    _apply_process_settings(params, info)
    from .model import acquire

    checkpoint = checkpoint_or_tiny(params.checkpoint, warn)
    dtype = getattr(torch, params.dtype) if params.dtype else None  # the schema allows float32, bfloat16
    policy = acquire(checkpoint, device=params.device, dtype=dtype)
    return PolicyModel(LocalBackend(policy, spatial_prompt=params.spatial_prompt), policy)


def _apply_process_settings(params, info: Callable[[str], None]) -> None:
    """torch threads and the GIL switch interval are process-wide: the model runs on a thread beside
    the executor's and, on CPU, must leave a core to the control loop."""
    import torch

    threads = torch_thread_count(params.torch_threads, params.device, os.cpu_count())
    if threads is not None:
        torch.set_num_threads(threads)
        info(f"torch uses {threads} CPU thread(s) in this process")
    interval = params.gil_switch_interval
    if interval > 0 and abs(sys.getswitchinterval() - interval) > 1e-9:
        sys.setswitchinterval(interval)
        info(f"Python GIL switch interval set to {interval * 1e3:.2f} ms (process-wide)")


def make_rtc(params, embodiment_control_period: float):
    """Real-time chunking's bookkeeping (``internvla_core.rtc``), or None when off."""
    if not params.rtc:
        return None
    if params.backend != "local":
        raise ValueError("rtc needs the local backend (upstream's server has no inpainting)")
    from .rtc import RealTimeChunking

    delay = params.rtc_delay_steps
    return RealTimeChunking(
        params.rtc_control_period or embodiment_control_period,
        delay_steps=None if delay < 0 else delay,
        overlap_steps=params.rtc_overlap_steps,
    )
