"""A complete, randomly initialised, tiny InternVLA-M1 saved in upstream's released run-dir layout.

Why: tests, the demo and the benchmarks must exercise the SAME loading and inference code as the real
8.9 GB checkpoints, offline and in seconds. The factory writes::

    <run>/config.yaml, config.json        upstream config structure (base_vlm relative: "tiny_qwen25vl")
    <run>/dataset_statistics.json         keys oxe_bridge, oxe_rt1, franka (upstream format)
    <run>/checkpoints/steps_0_pytorch_model.pt   full state dict with upstream's key names
    <run>/tiny_qwen25vl/                  Qwen2.5-VL config.json (4.52-style, like the hub's), generation
                                          config, preprocessor config, chat template, and a small byte-level
                                          BPE tokenizer carrying Qwen's 22 special tokens in Qwen's id order

Sizes: LLM 4 layers x 128, vision tower 2 blocks x 64, DINOv2 2 blocks x 64, QFormer over hidden states
[3:5], DiT 2 blocks x 64 (64 condition tokens as upstream). The DiT's final layer is re-drawn: upstream
zero-initialises it, which would make every prediction equal the noise-free trivial answer and let
tests pass vacuously.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

TINY_FORMAT_VERSION = 1
"""Bump when the factory's output changes, so cached tiny checkpoints are rebuilt."""

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
"""Qwen2/2.5 added tokens in Qwen's id order (151643..151664 in the real vocabulary)."""

QWEN_SPLIT_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
    "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif "
    "%}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content "
    "%}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value "
    "}}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] "
    "}}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2.5-VL-Instruct's chat template (default system turn, one pad token per image item)."""

COT_PROMPT = (
    "Your task is {instruction}. To identify the key objects for your task. Locate their bounding boxes in "
    "[x1,y1,x2,y2] format."
)

_CORPUS = (
    "put the purple can on the orange cup. pick up the red plate and place it in the purple block.",
    "move the spoon onto the towel. put carrot on plate. stack the green block on the yellow block.",
    "put eggplant into yellow basket. open the top drawer and place the apple into it. close the drawer.",
    "pick coke can. move near the sponge. your task is to identify the key objects for your task.",
    'locate their bounding boxes in [x1,y1,x2,y2] format. [{"bbox_2d": [12, 34, 156, 178], "label": "cup"}]',
    '[{"point_2d": [120, 64], "label": "apple"}] [{"trace": [[10, 20], [30, 40]], "label": "gripper"}]',
    "give the bounding box for the apple. point to the bowl. draw the trajectory. 0123456789",
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model (all knobs that change the saved files)."""

    seed: int = 0
    action_horizon: int = 16
    action_dim: int = 7
    text_layers: int = 4
    text_hidden: int = 128
    text_heads: int = 4
    text_kv_heads: int = 2
    vision_depth: int = 2
    vision_hidden: int = 64
    dino_dims: tuple[int, int, int] | None = (64, 2, 2)  # embed_dim, depth, heads; None: dino_backbone
    dit_dims: tuple[int, int, int] | None = (64, 2, 4)  # token_size, depth, heads; None: action_model_type
    dino_backbone: str = "dinov2_vits14"
    action_model_type: str = "DiT-S"
    vision_heads: int = 4
    qformer_layers: tuple[int, int] = (3, 5)
    num_query_tokens: int = 64
    bpe_vocab: int = 400
    image_size: tuple[int, int] = (224, 224)  # datasets.vla_data.image_size (w, h) the VLM sees
    zero_init_final: bool = False  # upstream's init of the DiT final layer (training from scratch)

    def digest(self) -> str:
        fields = asdict(self)
        for name, default in _DIGEST_OPTIONAL.items():  # added later: defaults keep the old digests
            if fields[name] == default:
                del fields[name]
        text = json.dumps({"v": TINY_FORMAT_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


_DIGEST_OPTIONAL: dict[str, Any] = {"image_size": (224, 224), "zero_init_final": False}


MID_SPEC = TinySpec(
    text_layers=8,
    text_hidden=512,
    text_heads=8,
    text_kv_heads=2,
    vision_depth=4,
    vision_hidden=256,
    vision_heads=4,
    dino_dims=None,  # dinov2_vits14 preset (22M)
    dit_dims=None,  # DiT-S preset (11M)
    qformer_layers=(8, 9),  # the final normed state only, like the 3B model's [36:37]
)
"""A mid-size configuration for benchmarks (about 60M parameters): same code paths, realistic heads."""


# ------------------------------------------------------------------------------------------- tokenizer


def _train_tokenizer(out_dir: Path, bpe_vocab: int) -> dict[str, int]:
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(list(_CORPUS) * 8, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tok.save(str(out_dir / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in QWEN_SPECIAL_TOKENS}
    first = ids[QWEN_SPECIAL_TOKENS[0]]
    if [ids[t] - first for t in QWEN_SPECIAL_TOKENS] != list(range(len(QWEN_SPECIAL_TOKENS))):
        raise RuntimeError("special tokens did not get consecutive ids in Qwen's order")
    decoder = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t, i in ids.items()
    }
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "Qwen2Tokenizer",
                "added_tokens_decoder": decoder,
                "additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:14]),
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": None,
                "errors": "replace",
                "add_prefix_space": False,
                "clean_up_tokenization_spaces": False,
                "split_special_tokens": False,
                "model_max_length": 32768,
            },
            indent=2,
        )
    )
    return ids


# -------------------------------------------------------------------------------------------- base VLM


def _write_base_vlm(out_dir: Path, spec: TinySpec) -> None:
    out_dir.mkdir(parents=True)
    ids = _train_tokenizer(out_dir, spec.bpe_vocab)
    vocab_size = ((max(ids.values()) + 1 + 63) // 64) * 64  # padded rows like Qwen's real vocabulary
    head_dim = spec.text_hidden // spec.text_heads
    half = head_dim // 2
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    text = {
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "hidden_act": "silu",
        "hidden_size": spec.text_hidden,
        "initializer_range": 0.08,
        "intermediate_size": 2 * spec.text_hidden,
        "max_position_embeddings": 32768,
        "max_window_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "num_hidden_layers": spec.text_layers,
        "num_key_value_heads": spec.text_kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_scaling": {"mrope_section": mrope, "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }
    config = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        **text,
        "torch_dtype": "float32",
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "vision_config": {
            "depth": spec.vision_depth,
            "fullatt_block_indexes": [spec.vision_depth - 1],
            "hidden_act": "silu",
            "hidden_size": spec.vision_hidden,
            "in_chans": 3,
            "initializer_range": 0.08,
            "intermediate_size": 2 * spec.vision_hidden,
            "model_type": "qwen2_5_vl",
            "num_heads": spec.vision_heads,
            "out_hidden_size": spec.text_hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
        },
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": ids["<|endoftext|>"],
                "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
                "pad_token_id": ids["<|endoftext|>"],
                "do_sample": False,
            },
            indent=2,
        )
    )
    (out_dir / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor",
                "do_convert_rgb": True,
                "do_normalize": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "rescale_factor": 1 / 255,
                "min_pixels": 3136,
                "max_pixels": 12845056,
                "merge_size": 2,
                "patch_size": 14,
                "temporal_patch_size": 2,
                "resample": 3,
            },
            indent=2,
        )
    )
    (out_dir / "chat_template.jinja").write_text(QWEN25_VL_CHAT_TEMPLATE)


# ----------------------------------------------------------------------------------------- run config


def _run_config(spec: TinySpec, run_id: str) -> dict[str, Any]:
    dino: dict[str, Any] = {"dino_backbone": spec.dino_backbone}
    if spec.dino_dims is not None:
        dino.update(zip(("embed_dim", "depth", "num_heads"), spec.dino_dims))
    action_model: dict[str, Any] = {"action_model_type": spec.action_model_type}
    if spec.dit_dims is not None:
        action_model.update(zip(("token_size", "depth", "num_heads"), spec.dit_dims))
        token_size = spec.dit_dims[0]
    else:
        token_size = {"DiT-S": 384, "DiT-B": 768, "DiT-L": 1024}[spec.action_model_type]
    return {
        "run_id": run_id,
        "seed": spec.seed,
        "framework": {
            "framework_py": "InternVLA-M1",
            "qwenvl": {
                "base_vlm": "tiny_qwen25vl",
                "attn_implementation": "sdpa",
                "vl_hidden_dim": spec.text_hidden,
            },
            "dino": dino,
            "layer_qformer": {
                "qformer_start_layer": spec.qformer_layers[0],
                "qformer_end_layer": spec.qformer_layers[1],
                "num_query_tokens": spec.num_query_tokens,
                "input_dim": spec.text_hidden,
                "ouptput_dim": token_size,
                "grad_scale": 0.5,
            },
            "action_model": {
                **action_model,
                "action_hidden_dim": token_size,
                "action_dim": spec.action_dim,
                "use_ema": False,
                "future_action_window_size": spec.action_horizon - 1,
                "past_action_window_size": 0,
                "repeated_diffusion_steps": 8,
            },
        },
        "datasets": {
            "vla_data": {
                "dataset_py": "lerobot_datasets",
                "data_mix": "bridge_rt_1",
                "action_type": "delta_ee",
                "CoT_prompt": COT_PROMPT,
                "CoT_answer": "bbox",
                "default_image_resolution": [3, spec.image_size[1], spec.image_size[0]],
                "obs": ["image_0"],
                "image_size": list(spec.image_size),
            }
        },
        "trainer": {"repeated_diffusion_steps": 4, "max_train_steps": 0},
    }


def _stats_block(q01: list[float], q99: list[float], action_dim: int) -> dict[str, Any]:
    q01 = (q01 + [0.0] * action_dim)[:action_dim]
    q99 = (q99 + [1.0] * action_dim)[:action_dim]
    q01[-1], q99[-1] = 0.0, 1.0  # gripper last, in {0, 1}
    mean = [(a + b) / 2 for a, b in zip(q01, q99)]
    std = [(b - a) / 4 for a, b in zip(q01, q99)]
    return {
        "action": {
            "mean": mean,
            "std": std,
            "max": [b * 1.5 for b in q99],
            "min": [a * 1.5 for a in q01],
            "q01": q01,
            "q99": q99,
            "mask": [True] * (action_dim - 1) + [False],
        },
        "state": {"mean": mean, "std": std, "max": q99, "min": q01, "q01": q01, "q99": q99},
        "num_transitions": 1000,
        "num_trajectories": 10,
    }


def _dataset_statistics(action_dim: int) -> dict[str, Any]:
    return {
        "oxe_bridge": _stats_block(
            [-0.0287, -0.0417, -0.0263, -0.0801, -0.0913, -0.2108],
            [0.0283, 0.0409, 0.0403, 0.0818, 0.0788, 0.2029],
            action_dim,
        ),
        "oxe_rt1": _stats_block(
            [-0.2245, -0.1482, -0.2316, -0.3518, -0.4194, -0.4364],
            [0.1782, 0.1494, 0.2184, 0.5898, 0.3525, 0.4470],
            action_dim,
        ),
        "franka": _stats_block(
            [-0.75, -0.75, -0.94, -0.11, -0.16, -0.19], [0.94, 0.86, 0.94, 0.15, 0.18, 0.32], action_dim
        ),
    }


# ---------------------------------------------------------------------------------------------- build


def build_tiny_checkpoint(
    out_dir: str | Path,
    seed: int = 0,
    *,
    action_horizon: int = 16,
    action_dim: int = 7,
    spec: TinySpec | None = None,
    statistics: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny run dir at ``out_dir`` (must not exist or be empty); returns the ``.pt`` checkpoint path.

    Deterministic for a given seed: the same seed gives the same weights and files. ``statistics``
    replaces the built-in dataset_statistics.json content (e.g. a dataset's own ``m1_statistics``);
    ``spec.zero_init_final`` keeps upstream's zero-initialised DiT final layer (a model to train) instead
    of the re-drawn one (a random model whose predictions depend on its inputs, for inference tests).
    """
    import torch

    from .config import load_run_config
    from .framework import InternVLAM1

    spec = spec or TinySpec(seed=seed, action_horizon=action_horizon, action_dim=action_dim)
    if action_dim < 7:
        raise ValueError(
            "action_dim must be >= 7 (upstream un-normalisation treats channel 6 as the gripper)"
        )
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    _write_base_vlm(out / "tiny_qwen25vl", spec)
    cfg = _run_config(spec, out.name)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    stats = statistics if statistics is not None else _dataset_statistics(spec.action_dim)
    (out / "dataset_statistics.json").write_text(json.dumps(stats, indent=2))

    config = load_run_config(out)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(spec.seed)
        model = InternVLAM1(config, out / "tiny_qwen25vl", init_weights=True)
        final = model.action_model.net.final_layer.linear
        gen = torch.Generator().manual_seed(spec.seed + 17)
        with torch.no_grad():
            if spec.zero_init_final:
                final.weight.zero_()
                final.bias.zero_()
            else:
                final.weight.copy_(
                    torch.randn(final.weight.shape, generator=gen) / final.weight.shape[1] ** 0.5
                )
                final.bias.copy_(torch.randn(final.bias.shape, generator=gen) * 0.02)
    finally:
        torch.random.set_rng_state(state)
    (out / "checkpoints").mkdir()
    ckpt = out / "checkpoints" / "steps_0_pytorch_model.pt"
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, ckpt)
    (out / "tiny_build_info.json").write_text(
        json.dumps({"format": TINY_FORMAT_VERSION, **asdict(spec)}, indent=2)
    )
    return ckpt


def default_cache_root() -> Path:
    env = os.environ.get("INTERNVLA_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "internvla_ros"
    return base / "tiny"


def tiny_checkpoint(cache_dir: str | Path | None = None, spec: TinySpec | None = None) -> Path:
    """Path of a cached tiny checkpoint (built once per content version; safe across processes).

    The run is built in a temporary sibling directory and renamed into place atomically, so a concurrent
    process either sees a complete run or builds its own and discards it when it loses the rename race.
    """
    spec = spec or TinySpec()
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    final = root / f"v{TINY_FORMAT_VERSION}-{spec.digest()}"
    ckpt = final / "checkpoints" / "steps_0_pytorch_model.pt"
    if (final / "BUILD_OK").is_file() and ckpt.is_file():
        return ckpt
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        run = tmp / final.name
        build_tiny_checkpoint(run, spec=spec)
        (run / "BUILD_OK").write_text("ok\n")
        try:
            os.rename(run, final)
        except OSError:
            if not (final / "BUILD_OK").is_file():  # a stale, incomplete dir: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(run, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ckpt
