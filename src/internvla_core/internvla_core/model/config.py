"""Read an upstream run directory's ``config.yaml`` into the few settings the model needs.

The run dir layout is upstream's (spec section 2): ``config.yaml`` (OmegaConf dump of the training config),
``dataset_statistics.json`` and ``checkpoints/steps_<N>_pytorch_model.pt``. Only inference-relevant keys
are read; everything else is kept in :attr:`M1Config.raw` untouched.

Extension keys (ours, for small test models; upstream ignores them): ``framework.dino.embed_dim/depth/
num_heads`` build a DINOv2 of explicit size instead of a named preset, and ``framework.action_model.
token_size/depth/num_heads`` override the DiT preset.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_BASE_VLM = "Qwen/Qwen2.5-VL-3B-Instruct"
VLM_CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)
"""Files of a Qwen2.5-VL directory the model needs to be *built* (never the weights: the VLA checkpoint
carries them)."""

_INTERP = re.compile(r"\$\{([^}]+)\}")


class ConfigError(ValueError):
    """The run directory's config is missing or lacks a key the model cannot be built without."""


def _lookup(root: dict[str, Any], dotted: str) -> Any:
    node: Any = root
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"config interpolation '${{{dotted}}}' points to a missing key")
        node = node[part]
    return node


def resolve_interpolations(cfg: Any, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """Resolve OmegaConf-style absolute ``${a.b}`` references (upstream resolves them when loading)."""
    root = cfg if root is None else root
    if depth > 20:
        raise ConfigError("config interpolation nests too deep (a cycle?)")
    if isinstance(cfg, dict):
        return {k: resolve_interpolations(v, root, depth) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [resolve_interpolations(v, root, depth) for v in cfg]
    if isinstance(cfg, str) and "${" in cfg:
        whole = _INTERP.fullmatch(cfg)
        if whole and not whole.group(1).startswith("oc."):
            return resolve_interpolations(_lookup(root, whole.group(1)), root, depth + 1)
        return _INTERP.sub(
            lambda m: str(resolve_interpolations(_lookup(root, m.group(1)), root, depth + 1)), cfg
        )
    return cfg


def _get(d: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return default
        node = node[part]
    return node


@dataclass
class M1Config:
    """Inference-relevant settings of one run (see spec section 2 for where each comes from)."""

    run_dir: Path
    base_vlm: str
    dino_backbone: str = "dinov2_vits14"
    dino_dims: tuple[int, int, int] | None = None  # (embed_dim, depth, num_heads) for custom sizes
    qformer_start_layer: int = 36
    qformer_end_layer: int = 37
    num_query_tokens: int = 64
    qformer_input_dim: int | None = None
    qformer_output_dim: int | None = None
    action_model_type: str = "DiT-B"
    dit_dims: tuple[int, int, int] | None = None  # (token_size, depth, num_heads) override
    action_dim: int = 7
    future_action_window_size: int = 15
    past_action_window_size: int = 0
    image_size: tuple[int, int] | None = (224, 224)
    cot_prompt: str | None = None
    framework_py: str = "InternVLA-M1"
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def action_horizon(self) -> int:
        return self.future_action_window_size + 1

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], run_dir: Path) -> M1Config:
        cfg = resolve_interpolations(cfg)
        fw = cfg.get("framework")
        if not isinstance(fw, dict):
            raise ConfigError(
                f"{run_dir}/config.yaml has no 'framework' section (is this an InternVLA-M1 run?)"
            )
        framework_py = str(fw.get("framework_py", "InternVLA-M1"))
        if framework_py not in ("InternVLA-M1", "DinoQFormerACT"):
            raise ConfigError(
                f"framework_py '{framework_py}' is not InternVLA-M1 (legacy alias DinoQFormerACT)"
            )
        dino = fw.get("dino") or {}
        dino_dims = None
        if all(k in dino for k in ("embed_dim", "depth", "num_heads")):
            dino_dims = (int(dino["embed_dim"]), int(dino["depth"]), int(dino["num_heads"]))
        am = fw.get("action_model") or {}
        dit_dims = None
        if all(k in am for k in ("token_size", "depth", "num_heads")):
            dit_dims = (int(am["token_size"]), int(am["depth"]), int(am["num_heads"]))
        if int(am.get("past_action_window_size", 0) or 0) != 0:
            raise ConfigError("past_action_window_size must be 0 (upstream's inference path assumes it)")
        lq = fw.get("layer_qformer") or {}
        vla = _get(cfg, "datasets.vla_data", {}) or {}
        image_size = vla.get("image_size")
        if image_size is not None:
            if not (isinstance(image_size, (list, tuple)) and len(image_size) == 2):
                raise ConfigError(f"datasets.vla_data.image_size must be [w, h], got {image_size!r}")
            image_size = (int(image_size[0]), int(image_size[1]))
        # Upstream checks `"CoT_prompt" in vla_data`: a present-but-null value would be used as "".
        cot = vla.get("CoT_prompt")
        if "CoT_prompt" in vla and cot is None:
            cot = ""
        out_dim = lq.get("ouptput_dim", lq.get("output_dim"))  # upstream's key is misspelled
        return cls(
            run_dir=Path(run_dir),
            base_vlm=str(_get(fw, "qwenvl.base_vlm", DEFAULT_BASE_VLM)),
            dino_backbone=str(dino.get("dino_backbone", "dinov2_vits14")),
            dino_dims=dino_dims,
            qformer_start_layer=int(lq.get("qformer_start_layer", 36)),
            qformer_end_layer=int(lq.get("qformer_end_layer", 37)),
            num_query_tokens=int(lq.get("num_query_tokens", 64)),
            qformer_input_dim=int(lq["input_dim"]) if lq.get("input_dim") is not None else None,
            qformer_output_dim=int(out_dim) if out_dim is not None else None,
            action_model_type=str(am.get("action_model_type", "DiT-B")),
            dit_dims=dit_dims,
            action_dim=int(am.get("action_dim", 7)),
            future_action_window_size=int(am.get("future_action_window_size", 15)),
            past_action_window_size=0,
            image_size=image_size,
            cot_prompt=cot,
            framework_py=framework_py,
            raw=cfg,
        )


def run_dir_of(checkpoint: Path) -> Path:
    """Upstream layout: ``<run>/checkpoints/<file>``; a file directly in the run dir is accepted too."""
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" else parent


def load_run_config(run_dir: str | Path) -> M1Config:
    """Parse ``<run_dir>/config.yaml`` (or ``config.json`` when the yaml is absent)."""
    run_dir = Path(run_dir)
    yaml_path, json_path = run_dir / "config.yaml", run_dir / "config.json"
    path = yaml_path if yaml_path.is_file() else json_path
    if not path.is_file():
        raise ConfigError(f"no config.yaml or config.json in run dir {run_dir}")
    try:
        data = yaml.safe_load(path.read_text())  # JSON is valid YAML
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a mapping")
    return M1Config.from_dict(data, run_dir)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


def resolve_base_vlm(base_vlm: str, run_dir: str | Path) -> Path:
    """Directory holding the base VLM's config/tokenizer/processor files.

    Order: an absolute path; a path relative to the run dir; a hub id served from the local HF cache;
    a hub id downloaded (config, tokenizer and processor files only, never weights) when HF_HUB_OFFLINE
    is unset.
    """
    candidate = Path(os.path.expanduser(base_vlm))
    if candidate.is_absolute():
        if (candidate / "config.json").is_file():
            return candidate
        # Released configs often name the training cluster's path: try a copy next to the run dir, then
        # the public hub repo of the same name.
        local_copy = Path(run_dir) / candidate.name
        if (local_copy / "config.json").is_file():
            return local_copy.resolve()
        if candidate.name.startswith("Qwen2.5-VL"):
            return _resolve_hub_id(f"Qwen/{candidate.name}", f"base_vlm {candidate} does not exist here")
        raise ConfigError(
            f"base_vlm directory {candidate} (from config.yaml) has no config.json; copy the Qwen2.5-VL "
            "config/tokenizer/processor files there or pass base_vlm=<dir or hub id> to load_policy"
        )
    relative = Path(run_dir) / candidate
    if (relative / "config.json").is_file():
        return relative.resolve()
    if base_vlm.count("/") != 1 or base_vlm.startswith("."):
        raise ConfigError(
            f"base_vlm '{base_vlm}' is neither a directory (relative to {run_dir}) nor a hub id"
        )
    return _resolve_hub_id(base_vlm, f"base_vlm '{base_vlm}' is a hub id")


def _resolve_hub_id(repo_id: str, why: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a declared dependency
        raise ConfigError("huggingface_hub is needed to resolve a hub id for base_vlm") from exc
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(VLM_CONFIG_FILES), local_files_only=True))
    except Exception as cached_exc:
        if _hub_offline():
            raise ConfigError(
                f"{why}; '{repo_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: unset "
                "HF_HUB_OFFLINE to download its config files (no weights), or pass base_vlm=<local dir>"
            ) from cached_exc
    return Path(snapshot_download(repo_id, allow_patterns=list(VLM_CONFIG_FILES)))
