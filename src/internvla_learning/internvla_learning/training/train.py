"""``internvla-train``: train InternVLA-M1 on a LeRobot v3.0 dataset, writing upstream's run layout.

Stages (paper: spatial grounding pre-training, then spatially guided action post-training):

- ``--stage 0``: vision pre-training (ours, standing in for DINOv2's pre-trained weights, which cannot be
  downloaded here): DINO's patch tokens learn dense maps of the target's box and the vectors to the
  target and to the gripper from the simulator's labels (:mod:`.vision`); only DINO trains.
- ``--stage 1``: next-token loss of the VLM on the dataset's grounding question-answer pairs (boxes,
  points, traces), only the Qwen model trains.
- ``--stage 2``: upstream's forward (CoT spatial prompt -> VLM -> layer-wise QFormer + DINO -> DiT diffusion
  loss, chunk and condition repeated ``repeated_diffusion_steps`` times, condition dropout 0.1) plus the
  VLM co-training loss weighted ``--vlm-loss-weight`` (0.1). ``--freeze-vlm``: the VLM and DINO are frozen,
  their per-frame features are computed once and cached in the run dir, and only dino_pro + QFormer + DiT
  train (no co-training loss, nothing flows into the VLM).

Optimiser as upstream: AdamW betas (0.9, 0.95), eps 1e-8, weight decay 1e-8, learning rates per module
(``qwen_vl_interface`` 1e-5, ``action_model`` 1e-4, the rest 5e-5), cosine schedule with warmup and min lr,
grad clipping 1.0, bf16 autocast on CUDA (inside the model). The run dir holds ``config.yaml`` /
``config.json`` / ``dataset_statistics.json`` / ``checkpoints/steps_<N>_pytorch_model.pt`` / ``summary.jsonl``
/ ``final_model/pytorch_model.pt`` (loadable by ``internvla_core.model.load_policy``), plus ours:
``train_args.json``, ``train_state/steps_<N>.pt`` (optimizer, scheduler, RNG: exact ``--resume``),
``metrics.jsonl`` / ``metrics.csv`` / ``loss_curve.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

TRAIN_ARGS = "train_args.json"
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class TrainingError(RuntimeError):
    """A run cannot start or continue (bad arguments, run dir state); the message says what to do."""


FEATURE_CACHE_DTYPES = ("float16", "float32")  # --feature-cache-dtype


class TrainingDivergedError(TrainingError):
    """The loss became NaN/inf or exceeded ``--max-loss``; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------------------------ options


@dataclass
class TrainConfig:
    data: str
    out: str
    stage: int = 2
    init: str | None = None
    tiny: str | None = None  # "toy" | "default": build a fresh tiny model (zero-init DiT head) to train
    image_size: int | None = None  # tiny model's VLM image size (square); None: the preset's
    cameras: list[str] | None = None
    frame_stride: int = 1  # every k-th frame starts a sample (see training.data.load_training_data)
    drop_pauses: str | None = None  # "all" | "grasp": pause frames left out (training.data.pause_frames)
    steps: int = 100
    batch_size: int = 8
    vlm_batch_size: int | None = None
    seed: int = 0
    lr_base: float = 5e-5
    lr_vlm: float = 1e-5
    lr_action: float = 1e-4
    min_lr: float = 5e-7
    warmup_steps: int | None = None  # None: 5 % of the steps
    weight_decay: float = 1e-8
    grad_clip: float = 1.0
    repeated_diffusion_steps: int = 4
    cond_drop_prob: float = 0.1
    vlm_loss_weight: float = 0.1
    qformer_grad_scale: float = 1.0
    qformer_attn_dropout: float | None = None  # None: the model's own (upstream 0.1)
    spatial_prompt: bool = True
    spatial_qa: bool = False  # grounding QA also asks the CoT (spatial) prompt -> the target's box
    freeze_vlm: bool = False
    train_dino: bool = False  # with freeze_vlm: DINO trained from the pixels, the VLM's features cached
    feature_cache_dtype: str = "float32"  # with freeze_vlm: "float16" halves the cache's memory
    query_token_std: float | None = None  # re-draw the QFormer's query tokens N(0, std^2) (None: keep)
    spatial_aux_weight: float = 0.0  # stage 2: weight of the condition -> target box auxiliary loss
    condition_gain: float | None = None  # scale the DiT's condition embedding (z_embedder) at the start
    spatial_aux_readout: str = "linear"  # "linear": a learned head; "channels": mean token, channels 0-3
    spatial_aux_gripper: bool = False  # the auxiliary target also holds the gripper's image point
    spatial_aux_gripper_state: bool = False  # ... and its height and opening
    spatial_aux_container: bool = False  # ... and the container's box centre (put_on tasks)
    vision_gripper_state: bool = False  # stage 0 also teaches the gripper's height and opening
    vision_encoder: str = "dino"  # stage 0 trains DINO ("dino") or the VLM's vision tower ("qwen")
    condition_norm: bool = False  # stage 2: the DiT sees its condition standardised (folded in at save)
    action_expert: tuple[int, int, int] | None = (
        None  # stage 2 from --init: a fresh QFormer output + DiT (W, D, H)
    )
    lora: bool = False
    save_every: int = 50
    log_every: int = 1
    max_loss: float = 1e4
    device: str = "auto"
    progress: bool = True


TINY_PRESETS = {
    # toy: seconds per step on 2 CPU cores, for tests
    "toy": dict(
        text_layers=2,
        text_hidden=64,
        text_heads=2,
        text_kv_heads=1,
        vision_depth=1,
        vision_hidden=32,
        vision_heads=2,
        dino_dims=(32, 1, 2),
        dit_dims=(32, 1, 2),
        qformer_layers=(2, 3),
        num_query_tokens=16,
        image_size=(56, 56),
    ),
    "default": {},  # internvla_core.model.tiny.TinySpec()'s sizes (1.4M parameters)
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .data import PAUSE_KINDS

    d = TrainConfig(data="", out="")
    p = argparse.ArgumentParser(
        prog="internvla-train",
        description="Train InternVLA-M1 (stage 1 grounding, stage 2 spatially guided actions) on a LeRobot "
        "v3.0 dataset; writes upstream's run layout that internvla_core's load_policy reads.",
    )
    p.add_argument("--data", help="LeRobot v3.0 dataset directory")
    p.add_argument("--out", required=True, help="run directory to write (or to continue with --resume)")
    p.add_argument(
        "--stage",
        type=int,
        choices=(0, 1, 2),
        default=d.stage,
        help="0: DINO vision pre-training on dense labels; 1: grounding; 2: actions",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--init", help="start from this run dir / .pt checkpoint (e.g. the stage-1 run)")
    src.add_argument("--tiny", choices=sorted(TINY_PRESETS), help="start from a fresh tiny model")
    p.add_argument("--image-size", type=int, help="VLM image size of a --tiny model (square)")
    p.add_argument("--cameras", nargs="+", help="camera keys used as views (default: the first camera)")
    p.add_argument(
        "--frame-stride",
        type=int,
        default=d.frame_stride,
        help="train on every k-th frame of each episode (chunks keep the full action rate)",
    )
    p.add_argument(
        "--drop-pauses",
        choices=PAUSE_KINDS,
        help="leave out frames where the demonstrator holds still inside an episode (no motion commanded, "
        "arm and fingers at rest): the same picture labelled 'hold k more steps' teaches a policy without "
        "memory to hold for ever. all: every such frame (upstream's no_noops datasets); grasp: only the "
        "hold after a grasp, shortened to one step (TRAINING.md, eighth round); settle: every command "
        "under 3 mm with the gripper unchanged, the arm at rest or not: the end of each move, where a push "
        "policy stopped (thirteenth round; it also drops the hold before a close); carry: grasp's frames and "
        "the settle frames while the gripper carries the target, after its first move since the close (for "
        "put-on tasks: the waypoints of the lift, the travel and the descent onto the container)",
    )
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--vlm-batch-size", type=int, help="grounding QA batch (default: --batch-size)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr-base", type=float, default=d.lr_base)
    p.add_argument("--lr-vlm", type=float, default=d.lr_vlm, help="qwen_vl_interface learning rate")
    p.add_argument("--lr-action", type=float, default=d.lr_action, help="action_model learning rate")
    p.add_argument("--min-lr", type=float, default=d.min_lr)
    p.add_argument("--warmup-steps", type=int, help="default: 5%% of --steps")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--grad-clip", type=float, default=d.grad_clip)
    p.add_argument("--repeated-diffusion-steps", type=int, default=d.repeated_diffusion_steps)
    p.add_argument("--cond-drop-prob", type=float, default=d.cond_drop_prob)
    p.add_argument("--vlm-loss-weight", type=float, default=d.vlm_loss_weight, help="stage-2 co-training")
    p.add_argument(
        "--qformer-grad-scale",
        type=float,
        default=d.qformer_grad_scale,
        help="scale of the gradient from the QFormer into the VLM/DINO features (upstream: 1, no effect)",
    )
    p.add_argument(
        "--qformer-attn-dropout",
        type=float,
        help="attention dropout of the QFormer's cross-attention while training (default: the model's, "
        "upstream 0.1). 0 keeps CPU attention on the fused kernel: a profiled cached step took 2.5 s "
        "instead of 4.1 s (TRAINING.md)",
    )
    p.add_argument("--no-spatial-prompt", dest="spatial_prompt", action="store_false")
    p.add_argument(
        "--spatial-qa",
        action="store_true",
        help="grounding QA (stage 1, co-training) also asks the model's CoT (spatial) prompt, answered "
        "with the target's box: the prompt stage 2 conditions on then asks the VLM where to act",
    )
    p.add_argument("--freeze-vlm", action="store_true", help="freeze VLM + DINO, cache their features")
    p.add_argument(
        "--train-dino",
        action="store_true",
        help="with --freeze-vlm: train DINO on the action loss from the frames at every step while the "
        "VLM's features stay cached (the frozen tiny DINO is random: its tokens carry the object's place "
        "only coarsely, TRAINING.md); keeps the DINO-size frames in memory",
    )
    p.add_argument(
        "--feature-cache-dtype",
        choices=FEATURE_CACHE_DTYPES,
        default=d.feature_cache_dtype,
        help="with --freeze-vlm: the cached features' precision. float16 halves the cache, which stays in "
        "memory (11,779 two-view samples: 2.2 GB in float16), and is read back as float32; a feature "
        "beyond float16's range stops the run with a message",
    )
    p.add_argument(
        "--query-token-std",
        type=float,
        help="re-draw the QFormer's query tokens from N(0, STD^2) before a fresh run (seeded by --seed). "
        "Upstream draws them with std 1, which makes every query's residual ~16x the attended features "
        "in the tiny model; BLIP-2's QFormer uses 0.02 (TRAINING.md)",
    )
    p.add_argument(
        "--condition-gain",
        type=float,
        help="multiply the DiT's condition embedding (action_model.net.z_embedder.linear) by GAIN before a "
        "fresh run: the DiT adds the timestep embedding to every condition token, and in the tiny model "
        "that embedding is ~200x the scene-dependent part of the embedded condition (TRAINING.md)",
    )
    p.add_argument(
        "--condition-norm",
        action="store_true",
        help="stage 2: the DiT embeds its condition standardised with running statistics (mean per query "
        "token and channel, std per channel), so what changes between scenes is not drowned by what never "
        "changes; each checkpoint folds the statistics into z_embedder and the condition positions of "
        "positional_embedding, so its keys, and inference, are upstream's (TRAINING.md)",
    )
    p.add_argument(
        "--action-expert",
        type=int,
        nargs=3,
        metavar=("WIDTH", "DEPTH", "HEADS"),
        help="stage 2 from --init: replace the action expert by a freshly initialised one of this size (the "
        "DiT's token width, depth and heads; the QFormer's output width follows the DiT's), keeping every "
        "other weight of the --init run. The tiny default's DiT is (64, 2, 4)",
    )
    p.add_argument(
        "--spatial-aux-weight",
        type=float,
        default=d.spatial_aux_weight,
        help="stage 2: add W x MSE of a linear read-out of the condition (the QFormer's output) against the "
        "target's box from the grounding labels. Training only: the head is not part of the checkpoint, "
        "inference is unchanged (TRAINING.md)",
    )
    p.add_argument(
        "--spatial-aux-readout",
        choices=SPATIAL_READOUTS,
        default=d.spatial_aux_readout,
        help="how --spatial-aux-weight reads the box from the condition: a learned linear head over all "
        "tokens (linear), the mean token's channels 0-3 as they are (channels: the condition itself must "
        "carry the box at its own scale), or channels 0-3 of every token (tokens: each condition token carries it)",
    )
    p.add_argument(
        "--spatial-aux-gripper",
        action="store_true",
        help="the spatial auxiliary target also holds the gripper's image point (6 values)",
    )
    p.add_argument(
        "--spatial-aux-gripper-state",
        action="store_true",
        help="with --spatial-aux-gripper: and the gripper's height and opening (8 values; measured worse, "
        "TRAINING.md)",
    )
    p.add_argument(
        "--spatial-aux-container",
        action="store_true",
        help="the spatial auxiliary target also holds the centre of the container's box (2 more values, "
        "after the others; frames where the container is hidden leave only those out): where a put_on "
        "task carries the block",
    )
    p.add_argument(
        "--vision-gripper-state",
        action="store_true",
        help="stage 0 also teaches every DINO patch the gripper's height and opening (measured worse on "
        "pick_green: the target is seen less sharply, TRAINING.md)",
    )
    p.add_argument(
        "--vision-encoder",
        choices=VISION_ENCODERS,
        default=d.vision_encoder,
        help="stage 0: the encoder that learns the dense maps: DINO (what stage 2's QFormer reads besides the "
        "VLM), or the VLM's own vision tower (qwen: its merged patch tokens, what stage 1's grounding answers "
        "are decoded from; --lr-vlm is its learning rate). Chain them with --init to train both",
    )
    p.add_argument("--lora", action="store_true", help="LoRA on the VLM (needs peft)")
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--max-loss", type=float, default=d.max_loss, help="stop when the loss exceeds this")
    p.add_argument("--device", default=d.device)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--resume", action="store_true", help="continue --out from its last checkpoint")
    return p.parse_args(argv)


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: v for k, v in vars(ns).items() if k in fields})


# ------------------------------------------------------------------------------------------------ helpers


def order_index(n: int, position: int, seed: int) -> int:
    """Item at global ``position`` of a stream of seeded per-epoch permutations of range(n)."""
    epoch, offset = divmod(position, n)
    return int(np.random.default_rng([seed, epoch]).permutation(n)[offset])


def batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Indices of batch ``step``: a pure function of (n, batch, step, seed), so a resumed run sees the
    same data order."""
    start = step * batch
    return [order_index(n, start + i, seed) for i in range(batch)]


def _progress(total: int, desc: str, enabled: bool, unit: str, initial: int = 0):
    """A tqdm bar, or None when progress output is off."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _rng_state(generator) -> dict:
    import torch

    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ConditionNorm:
    """--condition-norm: the DiT's ``z_embedder`` sees ``(z - mean[q]) / std`` during training.

    Why: the QFormer's output is mostly the same for every frame (its queries, and the attended prompt and
    background); what tells scenes apart is a few percent of it, and after the DiT's LayerNorms the DiT
    learned to ignore it (TRAINING.md). Standardising the condition makes its changes the size of the
    timestep embedding they are added to, as the oracle's clean condition is.

    The statistics are running averages (momentum 0.05) of the training conditions: ``mean`` per query
    token and channel [Q, W], ``std`` per channel [W]. The map is affine, so a checkpoint folds it in:
    ``W' = W / std`` (z_embedder.linear) and ``pos'[q] = pos[q] - W' mean[q]`` (the condition positions of
    positional_embedding). Inference then computes the same function with upstream's code and keys, for
    real and null conditions alike.
    """

    momentum = 0.05

    def __init__(self, net) -> None:
        self.net = net
        self.mean = None
        self.std = None
        self._linear_forward = net.z_embedder.forward
        net.z_embedder.forward = self._forward  # this instance only; the class is untouched

    def _forward(self, z):
        if self.mean is None:
            return self._linear_forward(z)
        return self._linear_forward((z - self.mean.to(z)) / self.std.to(z))

    def update(self, cond) -> None:
        import torch

        with torch.no_grad():
            cond = cond.float()
            mean = cond.mean(dim=0)
            if self.mean is None:
                self.mean = mean
            else:
                self.mean = (1 - self.momentum) * self.mean + self.momentum * mean
            std = (cond - self.mean).pow(2).mean(dim=(0, 1)).sqrt().clamp_min(1e-3)
            self.std = std if self.std is None else (1 - self.momentum) * self.std + self.momentum * std

    def fold_into(self, state: dict, prefix: str) -> None:
        """Rewrite ``state`` (a CPU state dict) so upstream's forward computes the standardised one."""
        if self.mean is None:
            return
        w_key, pos_key = prefix + "z_embedder.linear.weight", prefix + "positional_embedding"
        weight = state[w_key] / self.std.to(state[w_key])[None, :]
        pos = state[pos_key].clone()
        q = self.mean.shape[0]
        pos[:q] -= self.mean.to(weight) @ weight.T
        state[w_key], state[pos_key] = weight.contiguous(), pos.contiguous()

    def state(self) -> dict:
        net = self.net
        return {
            "mean": self.mean,
            "std": self.std,
            "z_embedder_weight": net.z_embedder.linear.weight.detach().cpu().clone(),
            "positional_embedding": net.positional_embedding.detach().cpu().clone(),
        }

    def load(self, state: dict) -> None:
        """Statistics back, and the live (unfolded) weights as they were: the checkpoint that --resume
        loaded holds them folded."""
        import torch

        self.mean, self.std = state["mean"], state["std"]
        net = self.net
        with torch.no_grad():
            net.z_embedder.linear.weight.copy_(state["z_embedder_weight"])
            net.positional_embedding.copy_(state["positional_embedding"])


def _channel_readout(cond, dims: int = 4):
    """The box as the condition carries it: channels 0-3 of its mean token (no parameters). A learned head
    can read a box that is a tiny change of a large condition; this read-out makes the box a change of the
    condition's own size, which is what the DiT needs to see it. ``dims`` 6 / 8: channels 4-5 carry the
    gripper's image point (--spatial-aux-gripper), 6-7 its height and opening (--spatial-aux-gripper-state)."""
    return cond.mean(dim=1)[:, :dims]


def _spatial_question(cot_prompt: str | None) -> str:
    """The CoT prompt (with ``{instruction}``) of the model training starts from: --spatial-qa asks it."""
    if not cot_prompt or "{instruction}" not in cot_prompt:
        raise TrainingError(
            f"--spatial-qa needs a CoT prompt with {{instruction}} in the model's config "
            f"(datasets.vla_data.CoT_prompt), found {cot_prompt!r}"
        )
    return cot_prompt


def _token_channel_readout(cond, dims: int = 4):
    """The box in channels 0-3 of *every* condition token [B, Q, 4]: each token the DiT attends to then
    carries the target's place, not only their average (``dims`` 6 / 8: and the gripper in 4-5 / 4-7)."""
    return cond[:, :, :dims]


FIXED_READOUTS = {"channels": _channel_readout, "tokens": _token_channel_readout}
VISION_ENCODERS = ("dino", "qwen")  # what stage 0 trains (--vision-encoder)
SPATIAL_READOUTS = ("linear", *FIXED_READOUTS)  # linear: a learned head (Trainer._build_spatial_head)


def vision_encoder_module(model, encoder: str):
    """The module stage 0 trains (--vision-encoder): DINO, or the VLM's vision tower (patch embedding,
    blocks and merger)."""
    return model.qwen_vl_interface.model.model.visual if encoder == "qwen" else model.dino_encoder


def vision_token_geometry(model, encoder: str) -> tuple[int, int]:
    """(pixels per token side, token width) of the stage-0 encoder: DINO's patch, or the vision tower's
    merged token (patch x spatial merge, e.g. 28 px) and its output width (the LLM's hidden size)."""
    if encoder == "qwen":
        config = vision_encoder_module(model, encoder).config
        return int(config.patch_size * config.spatial_merge_size), int(config.out_hidden_size)
    return int(model.dino_encoder.body.patch_size), int(model.dino_encoder.num_channels)


def vision_tokens(model, encoder: str, views, device=None):
    """[B, P, C] the stage-0 encoder's tokens of uint8 views [B, H, W, 3] (DINO's input size for "dino",
    the VLM's for "qwen"), row-major over the token grid. The VLM's views go through the batched
    preprocessing equal to the per-image path; the tower's merged tokens come back row-major over the merged
    grid (transformers undoes its window permutation)."""
    if encoder == "qwen":
        pixels = model.qwen_vl_interface.processor.pixels_from_tensor(views)
        out = vision_encoder_module(model, encoder)(
            pixels["pixel_values"].to(device), grid_thw=pixels["image_grid_thw"].to(device)
        )
        merged = out.pooler_output if hasattr(out, "pooler_output") else out
        return merged.reshape(views.shape[0], -1, merged.shape[-1])
    return model.dino_encoder(model.dino_encoder.preprocess_tensor(views).to(device))


def load_model(path: str | Path):
    """(model, run config, base-VLM dir) from a run dir or .pt, with the strict key/shape check
    (``CheckpointMismatchError`` names the mismatched keys)."""
    from internvla_core.model.checkpoint import load_checkpoint_into
    from internvla_core.model.config import load_run_config, resolve_base_vlm
    from internvla_core.model.framework import InternVLAM1
    from internvla_core.model.policy import resolve_checkpoint, run_dir_of

    ckpt = resolve_checkpoint(path)
    run = run_dir_of(ckpt)
    config = load_run_config(run)
    vlm_dir = resolve_base_vlm(config.base_vlm, run)
    model = InternVLAM1(config, vlm_dir, init_weights=False)
    load_checkpoint_into(model, ckpt)
    return model, config, Path(vlm_dir)


def resize_action_expert(model, config, vlm_dir: Path, dims: Sequence[int], seed: int):
    """(model, config) with a freshly initialised action expert of ``dims`` = (DiT width, depth, heads).

    Why: the tiny default's DiT (64 wide, 2 layers, ~0.1M parameters) turns a condition that locates the
    block to a few pixels into approach paths that scatter 2-3 cm around it (TRAINING.md); a wider, deeper
    expert is the capacity lever, and it should start from the run whose DINO already learned where the block
    is. The QFormer's output width must equal the DiT's, so the QFormer's output layers are new as well when
    the width changes; every weight whose name and shape match is kept (VLM, DINO, the QFormer's input side).
    The DiT's final layer starts at zero, as upstream initialises it. The returned config is what the run
    dir saves, so every loader rebuilds the resized model."""
    import torch

    from internvla_core.model.config import M1Config
    from internvla_core.model.framework import InternVLAM1

    width, depth, heads = (int(d) for d in dims)
    raw = json.loads(json.dumps(config.raw))
    framework = raw["framework"]
    framework["action_model"].update(token_size=width, depth=depth, num_heads=heads, action_hidden_dim=width)
    framework["layer_qformer"].pop("output_dim", None)
    framework["layer_qformer"]["ouptput_dim"] = width  # upstream's spelling, which the loader reads first
    new_config = M1Config.from_dict(raw, config.run_dir)
    torch.manual_seed(seed + 104729)
    new_model = InternVLAM1(new_config, vlm_dir, init_weights=True)
    kept = new_model.state_dict()
    for name, tensor in model.state_dict().items():
        if name in kept and kept[name].shape == tensor.shape and not name.startswith("action_model."):
            kept[name] = tensor
    new_model.load_state_dict(kept)
    final = new_model.action_model.net.final_layer.linear
    with torch.no_grad():
        final.weight.zero_()
        final.bias.zero_()
    return new_model, new_config


# -------------------------------------------------------------------------------------------- the trainer


class Trainer:
    """One run: prepares the run dir, data, model and optimiser, then :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.resume = resume

    # ---------------------------------------------------------------------------------------- set-up
    def _check_args(self) -> None:
        cfg = self.cfg
        if cfg.lora:
            try:
                import peft  # noqa: F401
            except ImportError as exc:
                raise TrainingError(
                    "--lora needs the 'peft' package, which is not installed in this environment; train "
                    "without --lora (or --freeze-vlm on CPU)"
                ) from exc
            raise TrainingError("--lora: peft is installed but LoRA training is not implemented yet")
        if not cfg.data:
            raise TrainingError("--data is required")
        if not (cfg.init or cfg.tiny):
            raise TrainingError("give --init <run dir or .pt> or --tiny {toy,default}")
        if cfg.stage in (0, 1) and cfg.freeze_vlm:
            raise TrainingError(
                f"--freeze-vlm leaves nothing to train in stage {cfg.stage} (it trains the "
                f"{'VLM' if cfg.stage == 1 else 'DINO encoder'})"
            )
        if cfg.train_dino and not (cfg.freeze_vlm and cfg.stage == 2):
            raise TrainingError(
                "--train-dino goes with --freeze-vlm in stage 2 (without --freeze-vlm DINO is trained anyway)"
            )
        if cfg.steps < 1 or cfg.batch_size < 1:
            raise TrainingError("--steps and --batch-size must be positive")
        if cfg.spatial_aux_weight < 0 or (cfg.spatial_aux_weight > 0 and cfg.stage != 2):
            raise TrainingError("--spatial-aux-weight must be >= 0 and applies to stage 2 only")
        if cfg.spatial_aux_readout not in SPATIAL_READOUTS:
            raise TrainingError(
                f"--spatial-aux-readout must be one of {SPATIAL_READOUTS}, got {cfg.spatial_aux_readout!r}"
            )
        if cfg.spatial_aux_gripper and cfg.spatial_aux_weight <= 0:
            raise TrainingError("--spatial-aux-gripper goes with --spatial-aux-weight > 0")
        if cfg.spatial_aux_gripper_state and not cfg.spatial_aux_gripper:
            raise TrainingError("--spatial-aux-gripper-state goes with --spatial-aux-gripper")
        if cfg.spatial_aux_container and cfg.spatial_aux_weight <= 0:
            raise TrainingError("--spatial-aux-container goes with --spatial-aux-weight > 0")
        if cfg.condition_norm and cfg.stage != 2:
            raise TrainingError("--condition-norm applies to stage 2 only")
        if cfg.vision_encoder not in VISION_ENCODERS:
            raise TrainingError(
                f"--vision-encoder must be one of {VISION_ENCODERS}, got {cfg.vision_encoder!r}"
            )
        if cfg.vision_encoder != "dino" and cfg.stage != 0:
            raise TrainingError("--vision-encoder applies to stage 0 only")
        if cfg.condition_gain is not None and not cfg.condition_gain > 0:
            raise TrainingError(f"--condition-gain must be positive, got {cfg.condition_gain}")
        if cfg.query_token_std is not None and not cfg.query_token_std > 0:
            raise TrainingError(f"--query-token-std must be positive, got {cfg.query_token_std}")
        if cfg.action_expert is not None:
            width, depth, heads = cfg.action_expert
            if cfg.stage != 2 or not cfg.init:
                raise TrainingError(
                    "--action-expert applies to stage 2 with --init (a new expert on a trained run)"
                )
            if min(width, depth, heads) < 1 or width % heads:
                raise TrainingError(
                    f"--action-expert {width} {depth} {heads}: sizes must be positive and the width a multiple "
                    "of the heads"
                )

    def setup(self) -> None:
        import torch

        cfg = self.cfg
        self._check_args()
        if self.resume:
            if not (self.out / TRAIN_ARGS).is_file():
                raise TrainingError(
                    f"--resume: {self.out} has no {TRAIN_ARGS} (not a run of internvla-train)"
                )
        elif self.out.exists() and any(self.out.iterdir()):
            raise TrainingError(f"{self.out} exists and is not empty; pick a new --out or pass --resume")
        self.device = _device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.out.mkdir(parents=True, exist_ok=True)

        from .data import load_training_data

        run_stats = None
        expected_embodiment = None
        if self.resume:
            from internvla_core.normalization import load_dataset_statistics

            run_stats = load_dataset_statistics(self.out)
            expected_embodiment = (
                self._run_config_raw().get("datasets", {}).get("vla_data", {}).get("embodiment")
            )
            model_src = self._last_state()[1]
        elif cfg.tiny:
            model_src = None
        else:
            model_src = cfg.init
            from internvla_core.model.config import load_run_config
            from internvla_core.model.policy import resolve_checkpoint, run_dir_of

            init_raw = load_run_config(run_dir_of(resolve_checkpoint(cfg.init))).raw
            expected_embodiment = init_raw.get("datasets", {}).get("vla_data", {}).get("embodiment")

        if model_src is None:  # fresh tiny model: needs the data's statistics and image size first
            from internvla_core.model.tiny import COT_PROMPT

            spec = self._tiny_spec()
            horizon, action_dim, image_size = spec.action_horizon, spec.action_dim, spec.image_size
            cot_prompt = COT_PROMPT
        else:
            from internvla_core.model.config import load_run_config
            from internvla_core.model.policy import resolve_checkpoint, run_dir_of

            c = load_run_config(run_dir_of(resolve_checkpoint(model_src)))
            horizon, action_dim, image_size = c.action_horizon, c.action_dim, c.image_size
            cot_prompt = c.cot_prompt
        spatial_question = _spatial_question(cot_prompt) if cfg.spatial_qa else None
        self.data = load_training_data(
            cfg.data,
            horizon=horizon,
            action_dim=action_dim,
            image_size=image_size,
            cameras=tuple(cfg.cameras) if cfg.cameras else None,
            grounding=cfg.stage == 1 or (cfg.stage == 2 and cfg.vlm_loss_weight > 0 and not cfg.freeze_vlm),
            embodiment=expected_embodiment,
            statistics=run_stats,
            frame_stride=cfg.frame_stride,
            spatial_question=spatial_question,
            drop_pauses=cfg.drop_pauses,
        )
        if model_src is None:
            from internvla_core.model.tiny import build_tiny_checkpoint

            init_dir = self.out / "init_model"
            build_tiny_checkpoint(init_dir, spec=spec, statistics=self.data.statistics)
            model_src = init_dir
        self.model, self.config, vlm_dir = load_model(model_src)
        if cfg.action_expert is not None and not self.resume:
            self.model, self.config = resize_action_expert(
                self.model, self.config, vlm_dir, cfg.action_expert, cfg.seed
            )
        if not self.resume:
            self._write_run_files(vlm_dir)
        self.model.to(self.device)
        self.model.layer_qformer.grad_scale = cfg.qformer_grad_scale
        if cfg.qformer_attn_dropout is not None:
            for module in self.model.layer_qformer.modules():
                if isinstance(module, torch.nn.MultiheadAttention):
                    module.dropout = cfg.qformer_attn_dropout
        if cfg.query_token_std is not None and not self.resume:
            self._redraw_query_tokens(cfg.query_token_std)
        if cfg.condition_gain is not None and not self.resume:
            with torch.no_grad():
                linear = self.model.action_model.net.z_embedder.linear
                linear.weight.mul_(cfg.condition_gain)
                linear.bias.mul_(cfg.condition_gain)
        self._configure_trainable()
        states = self.data.gripper_states
        self.gripper_state_norm = (states.mean(axis=0), states.std(axis=0) + 1e-6)
        self._build_spatial_head()
        self._build_vision_head()
        self.condition_norm = ConditionNorm(self.model.action_model.net) if cfg.condition_norm else None
        self._build_optimizer()
        self.start_step = 0
        if self.resume:
            self._load_state()
        if cfg.freeze_vlm and cfg.stage == 2:
            self._prepare_feature_cache()

    def _build_spatial_head(self) -> None:
        """--spatial-aux-weight: a linear read-out from the whole condition [Q x W] to the target's box.

        Why: the diffusion loss alone moved the QFormer's attention over the DINO and VLM tokens so slowly
        that after 10,000 steps the condition still did not say where the block is (TRAINING.md), while the
        same DiT given the box learned scene-dependent chunks in 500 steps. A supervised read-out makes the
        condition carry the target's place directly; the head lives in the trainer and its train state, the
        checkpoint keeps upstream's keys."""
        import torch

        self.spatial_head = None  # the learned head (trained, saved in train_state)
        self.spatial_readout = None  # condition [B, Q, W] -> box [B, 4]
        if self.cfg.spatial_aux_weight <= 0:
            return
        boxes = self.data.target_boxes
        if boxes is None or not bool(torch.isfinite(torch.from_numpy(boxes)).all(dim=1).any()):
            raise TrainingError(
                f"--spatial-aux-weight needs the target's box per frame (annotation.target_box, "
                f"annotation.target_visible) and {self.cfg.data} has none visible"
            )
        dims = 4 + 2 * self.cfg.spatial_aux_gripper + 2 * self.cfg.spatial_aux_gripper_state
        dims += 2 * self.cfg.spatial_aux_container
        containers = self.data.container_boxes
        if self.cfg.spatial_aux_container and (
            containers is None or not bool(np.isfinite(containers).all(axis=1).any())
        ):
            raise TrainingError(
                f"--spatial-aux-container needs the container's box per frame (annotation.container_box, "
                f"annotation.container_visible) and {self.cfg.data} has none visible: its task has no "
                "container (only put_on tasks such as red_on_plate have one)"
            )
        if self.cfg.spatial_aux_gripper and not bool(np.isfinite(self.data.gripper_points).all(axis=1).any()):
            raise TrainingError(
                f"--spatial-aux-gripper needs the gripper's image point per frame (annotation.trace) and "
                f"{self.cfg.data} has none"
            )
        if self.cfg.spatial_aux_readout in FIXED_READOUTS:
            readout = FIXED_READOUTS[self.cfg.spatial_aux_readout]
            self.spatial_readout = lambda cond: readout(cond, dims)
            return
        qformer = self.model.layer_qformer
        tokens, width = qformer.query_tokens.shape
        gen = torch.Generator().manual_seed(self.cfg.seed + 104729)
        head = torch.nn.Linear(tokens * width, dims)
        with torch.no_grad():
            bound = (tokens * width) ** -0.5
            head.weight.copy_(torch.rand(head.weight.shape, generator=gen) * 2 * bound - bound)
            head.bias.zero_()
        self.spatial_head = head.to(self.device)
        self.spatial_readout = lambda cond: self.spatial_head(cond.flatten(1))

    def _spatial_loss(self, cond, frames: list[int]):
        """MSE between the head's read-out of ``cond`` and the frames' target boxes in [-1, 1] (rows
        without a visible target are left out; None when the batch has none). The container's centre
        (--spatial-aux-container) counts only where the container is seen."""
        import torch

        boxes = torch.from_numpy(self.data.target_boxes[frames]).to(self.device)
        if self.cfg.spatial_aux_gripper:  # (x1, y1, x2, y2, gripper x, y[, height, opening])
            gripper = self.data.gripper_points[frames]
            if self.cfg.spatial_aux_gripper_state:
                gripper = np.concatenate([gripper, self._gripper_states(frames)], axis=1)
            boxes = torch.cat([boxes, torch.from_numpy(gripper.astype(np.float32)).to(self.device)], 1)
        visible = torch.isfinite(boxes).all(dim=1)
        if not bool(visible.any()):
            return None
        if self.cfg.spatial_aux_container:  # (..., container x, y): NaN where hidden, masked below
            container = self.data.container_boxes[frames]
            centre = 0.5 * (container[:, :2] + container[:, 2:])
            boxes = torch.cat([boxes, torch.from_numpy(centre.astype(np.float32)).to(self.device)], 1)
        pred = self.spatial_readout(cond[visible].float())
        target = 2 * boxes[visible] - 1
        if pred.dim() == 3:  # one box per condition token
            target = target[:, None, :]
        err = (pred - torch.nan_to_num(target)) ** 2
        known = torch.isfinite(target).expand_as(err)
        return err[known].mean()

    def _build_vision_head(self) -> None:
        """Stage 0: a linear head per DINO patch token -> the dense maps of :mod:`.vision` (it lives in the
        trainer and its train state; the checkpoint keeps upstream's keys, with DINO's weights trained)."""
        import torch

        from .vision import head_outputs

        self.vision_head = None
        self.vision_parts: list[str] = []
        if self.cfg.stage != 0:
            return
        data = self.data
        if not bool(np.isfinite(data.target_boxes).all(axis=1).any()):
            raise TrainingError(
                f"stage 0 learns where the target is from annotation.target_box / target_visible, and "
                f"{self.cfg.data} has no visible target box; record grounding labels (the data engine does)"
            )
        # every training camera with labels: the annotation camera's grounding, the others' view labels
        # (the wrist camera's, recorded by the data engine), so that the shared DINO learns each view
        labelled = [
            c for c in data.cameras
            if c in data.view_target_boxes and bool(np.isfinite(data.view_target_boxes[c]).all(axis=1).any())
        ]  # fmt: skip
        self.vision_views = [(data.cameras.index(c), c) for c in labelled]
        height, width = self._vision_views().shape[2:4]
        patch, channels = vision_token_geometry(self.model, self.cfg.vision_encoder)
        self.vision_grid = (width // patch, height // patch)
        gen = torch.Generator().manual_seed(self.cfg.seed + 15485863)
        # a task with a container (red_on_plate's plate) also teaches where it is, in the annotation view
        containers = data.container_boxes
        self.vision_containers = containers is not None and bool(np.isfinite(containers).all(axis=1).any())
        head = torch.nn.Linear(channels, head_outputs(self.vision_containers))
        with torch.no_grad():
            bound = head.in_features**-0.5
            head.weight.copy_(torch.rand(head.weight.shape, generator=gen) * 2 * bound - bound)
            head.bias.zero_()
        self.vision_head = head.to(self.device)
        # the parts metrics.jsonl reports, each the mean over the views that have it (None in a batch
        # without it): the same columns on every row
        self.vision_parts = ["mask", "to_target", "to_gripper"]
        self.vision_parts += ["gripper_state"] * self.cfg.vision_gripper_state
        self.vision_parts += ["to_container"] * self.vision_containers

    def _vision_encoder(self):
        return vision_encoder_module(self.model, self.cfg.vision_encoder)

    def _vision_views(self) -> np.ndarray:
        """The frames the stage-0 encoder reads: at the VLM's input size for its tower, else DINO's."""
        return self.data.vlm_views if self.cfg.vision_encoder == "qwen" else self.data.dino_views

    def _vision_tokens(self, frames: list[int], view: int):
        """[B, P, C] the stage-0 encoder's patch tokens of one camera view, row-major over its grid."""
        import torch

        views = self._vision_views()
        return vision_tokens(
            self.model, self.cfg.vision_encoder, torch.from_numpy(views[frames, view]), self.device
        )

    def _gripper_states(self, frames: list[int]) -> np.ndarray:
        """[B, 2] the frames' gripper height and opening, standardised over the training data."""
        mean, std = self.gripper_state_norm
        return ((self.data.gripper_states[frames] - mean) / std).astype(np.float32)

    def _vision_loss(self, step: int) -> dict[str, Any]:
        """Stage 0: the dense-map loss of DINO's patch tokens, averaged over the labelled views (the
        annotation camera, and the wrist camera when the dataset has its view labels and --cameras names
        it); each part (mask, to_target, ...) is reported as its mean over the views."""

        from .vision import dense_loss, dense_targets

        data = self.data
        frames = batch_indices(len(data), self.cfg.batch_size, step, self.cfg.seed)
        grid_w, grid_h = self.vision_grid
        state = self._gripper_states(frames) if self.cfg.vision_gripper_state else None
        total, sums, counts = 0.0, {}, {}
        for index, camera in self.vision_views:
            tokens = self._vision_tokens(frames, index)
            with_container = self.vision_containers and camera == data.annotation_camera
            targets = dense_targets(
                data.view_target_boxes[camera][frames],
                data.view_gripper_points[camera][frames],
                grid_w,
                grid_h,
                gripper_state=state,
                containers=data.container_boxes[frames] if with_container else None,
            )
            loss, parts = dense_loss(self.vision_head(tokens.float()), targets)
            total = total + loss
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
                counts[k] = counts.get(k, 0) + 1
        loss = total / len(self.vision_views)
        out = {"loss": loss, "vision_loss": loss.detach()}
        out.update({f"vision_{k}": v / counts[k] for k, v in sums.items()})
        return out

    def _redraw_query_tokens(self, std: float) -> None:
        """Query tokens from N(0, std^2), drawn from a generator seeded by --seed (deterministic runs).

        Why: the QFormer's output is the query plus what it attended to. Drawn with std 1 (upstream), a
        64-wide query has norm ~8 while the attended mean of ~400 VLM + DINO tokens has norm ~0.5 in the
        tiny model, and the scene-dependent part of that mean is a fraction of a percent: the condition is
        nearly the same for every scene. Small queries leave the attended features in charge."""
        import torch

        tokens = self.model.layer_qformer.query_tokens
        gen = torch.Generator().manual_seed(self.cfg.seed + 7919)
        with torch.no_grad():
            tokens.copy_((torch.randn(tokens.shape, generator=gen) * std).to(tokens))

    def _tiny_spec(self):
        from internvla_core.model.tiny import TinySpec

        kwargs = dict(TINY_PRESETS[self.cfg.tiny])
        if self.cfg.image_size:
            kwargs["image_size"] = (self.cfg.image_size, self.cfg.image_size)
        return TinySpec(seed=self.cfg.seed, zero_init_final=True, **kwargs)

    def _run_config_raw(self) -> dict:
        import yaml

        return yaml.safe_load((self.out / "config.yaml").read_text())

    def _write_run_files(self, vlm_dir: Path) -> None:
        import yaml

        cfg = self.cfg
        raw = json.loads(json.dumps(self.config.raw))  # deep copy, JSON-clean
        base = self.out / "base_vlm"
        if not base.exists():
            shutil.copytree(vlm_dir, base, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
        raw.setdefault("framework", {}).setdefault("qwenvl", {})["base_vlm"] = "base_vlm"
        raw["framework"].setdefault("layer_qformer", {})["grad_scale"] = cfg.qformer_grad_scale
        vla = raw.setdefault("datasets", {}).setdefault("vla_data", {})
        vla.update(
            data_root_dir=str(Path(cfg.data).resolve()),
            embodiment=self.data.embodiment,
            unnorm_key=self.data.unnorm_key,
            cameras=list(self.data.cameras),
            obs=[f"image_{i}" for i in range(len(self.data.cameras))],
        )
        if not cfg.spatial_prompt:  # inference then prompts with the bare instruction too (upstream's rule)
            vla.pop("CoT_prompt", None)
        raw["run_id"] = self.out.name
        raw["seed"] = cfg.seed
        raw["trainer"] = {
            **(raw.get("trainer") or {}),
            "stage": cfg.stage,
            "max_train_steps": cfg.steps,
            "num_warmup_steps": self._warmup(),
            "save_interval": cfg.save_every,
            "learning_rate": {
                "base": cfg.lr_base,
                "qwen_vl_interface": cfg.lr_vlm,
                "action_model": cfg.lr_action,
            },
            "lr_scheduler_type": "cosine_with_min_lr",
            "scheduler_specific_kwargs": {"min_lr": cfg.min_lr},
            "loss_scale": {"vla": 1.0, "vlm": cfg.vlm_loss_weight},
            "repeated_diffusion_steps": cfg.repeated_diffusion_steps,
            "gradient_clipping": cfg.grad_clip,
            "optimizer": {
                "name": "AdamW",
                "betas": [0.9, 0.95],
                "eps": 1e-8,
                "weight_decay": cfg.weight_decay,
            },
            "freeze_vlm": cfg.freeze_vlm,
            "train_dino": cfg.train_dino,
        }
        (self.out / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        (self.out / "config.json").write_text(json.dumps(raw, indent=2))
        (self.out / "dataset_statistics.json").write_text(json.dumps(self.data.statistics, indent=2))
        (self.out / TRAIN_ARGS).write_text(json.dumps(asdict(cfg), indent=2))
        (self.out / "checkpoints").mkdir(exist_ok=True)
        (self.out / "train_state").mkdir(exist_ok=True)

    def _warmup(self) -> int:
        c = self.cfg
        return c.warmup_steps if c.warmup_steps is not None else int(round(0.05 * c.steps))

    def _configure_trainable(self) -> None:
        m, cfg = self.model, self.cfg
        m.train()
        for p in m.parameters():
            p.requires_grad_(cfg.stage == 2)
        if cfg.stage == 0:
            for p in self._vision_encoder().parameters():
                p.requires_grad_(True)
        if cfg.stage == 1:
            for p in m.qwen_vl_interface.parameters():
                p.requires_grad_(True)
        if cfg.freeze_vlm:
            frozen = (m.qwen_vl_interface,) if cfg.train_dino else (m.qwen_vl_interface, m.dino_encoder)
            for module in frozen:
                module.eval()
                for p in module.parameters():
                    p.requires_grad_(False)

    def _build_optimizer(self) -> None:
        import torch
        from transformers import get_cosine_with_min_lr_schedule_with_warmup

        cfg, m = self.cfg, self.model
        groups, used = [], set()
        for name, lr in (("qwen_vl_interface", cfg.lr_vlm), ("action_model", cfg.lr_action)):
            params = [p for p in getattr(m, name).parameters() if p.requires_grad]
            used.update(id(p) for p in getattr(m, name).parameters())
            if params:
                groups.append({"params": params, "lr": lr, "name": name})
        rest = [p for p in m.parameters() if id(p) not in used and p.requires_grad]
        for head in (getattr(self, "spatial_head", None), getattr(self, "vision_head", None)):
            if head is not None:
                rest += list(head.parameters())
        if rest:
            groups.append({"params": rest, "lr": cfg.lr_base, "name": "base"})
        self.optimizer = torch.optim.AdamW(
            groups, lr=cfg.lr_base, betas=(0.9, 0.95), eps=1e-8, weight_decay=cfg.weight_decay
        )
        self.scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            self.optimizer, self._warmup(), cfg.steps, min_lr=cfg.min_lr
        )
        self.trainable = [p for g in groups for p in g["params"]]

    # ---------------------------------------------------------------------------------- checkpoints
    def _ckpt_path(self, step: int) -> Path:
        return self.out / "checkpoints" / f"steps_{step}_pytorch_model.pt"

    def _state_path(self, step: int) -> Path:
        return self.out / "train_state" / f"steps_{step}.pt"

    def _last_state(self) -> tuple[int, Path]:
        steps = sorted(
            int(p.stem.split("_")[1])
            for p in (self.out / "train_state").glob("steps_*.pt")
            if self._ckpt_path(int(p.stem.split("_")[1])).is_file()
        )
        if not steps:
            raise TrainingError(f"--resume: {self.out} has no checkpoint with training state to resume from")
        return steps[-1], self._ckpt_path(steps[-1])

    def save(self, step: int) -> Path:
        import torch

        ckpt = self._ckpt_path(step)
        state = {k: v.detach().cpu().clone().contiguous() for k, v in self.model.state_dict().items()}
        if self.condition_norm is not None:
            self.condition_norm.fold_into(state, prefix="action_model.net.")
        tmp = ckpt.with_suffix(".partial")
        torch.save(state, tmp)
        tmp.replace(ckpt)
        train_state = {
            "step": step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(self.generator),
        }
        if self.spatial_head is not None:
            train_state["spatial_head"] = self.spatial_head.state_dict()
        if self.vision_head is not None:
            train_state["vision_head"] = self.vision_head.state_dict()
            if self.cfg.vision_gripper_state:  # probe_vision scores the gripper state only when trained
                train_state["gripper_state_norm"] = [v.tolist() for v in self.gripper_state_norm]
        if self.condition_norm is not None:  # the live (unfolded) weights and statistics: exact --resume
            train_state["condition_norm"] = self.condition_norm.state()
        tmp = self._state_path(step).with_suffix(".partial")
        torch.save(train_state, tmp)
        tmp.replace(self._state_path(step))
        with open(self.out / "summary.jsonl", "a") as f:
            f.write(json.dumps({"steps": step}) + "\n")
        return ckpt

    def _load_state(self) -> None:
        import torch

        step, _ = self._last_state()
        state = torch.load(self._state_path(step), map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], self.generator)
        if self.condition_norm is not None:
            if "condition_norm" not in state:
                raise TrainingError(
                    f"{self.out} was trained without --condition-norm: cannot add it on --resume"
                )
            self.condition_norm.load(state["condition_norm"])
        if self.spatial_head is not None:
            if "spatial_head" not in state:
                raise TrainingError(
                    f"{self.out} was trained without --spatial-aux-weight: cannot add it on --resume"
                )
            self.spatial_head.load_state_dict(state["spatial_head"])
        if self.vision_head is not None:
            self.vision_head.load_state_dict(state["vision_head"])
        self.start_step = int(state["step"])
        self._truncate_metrics(self.start_step)

    # ----------------------------------------------------------------------------------- batches
    def _vlm_inputs(self, frames: list[int], prompts: list[str]):
        import torch

        views = torch.from_numpy(self.data.vlm_views[frames])  # [B, V, h, w, 3]
        b, v = views.shape[:2]
        proc = self.model.qwen_vl_interface.processor
        texts = [proc.chat_text(v, p) for p in prompts]
        return proc(texts, views.reshape(b * v, *views.shape[2:]))

    def _dino_pixels(self, frames: list[int]):
        import torch

        views = torch.from_numpy(self.data.dino_views[frames])
        return self.model.dino_encoder.preprocess_tensor(views.reshape(-1, *views.shape[2:]))

    def _qa_batch(self, step: int, size: int, seed_offset: int):
        """(packed inputs, labels) of a grounding QA batch: the answer tokens (+ <|im_end|>) are the
        targets, everything else -100."""
        import torch

        data = self.data
        pairs = [data.qa[i] for i in batch_indices(len(data.qa), size, step, self.cfg.seed + seed_offset)]
        proc = self.model.qwen_vl_interface.processor
        cam = data.cameras.index(data.annotation_camera)
        views = torch.from_numpy(data.vlm_views[[q.frame for q in pairs], cam])
        texts = [proc.chat_text(1, q.question) + q.answer + "<|im_end|>" for q in pairs]
        inputs = proc(texts, views)
        labels = torch.full_like(inputs.input_ids, -100)
        for row, q in enumerate(pairs):
            target = proc.tokenizer(q.answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
            n = len(target)
            if inputs.input_ids[row, -n:].tolist() != target:
                raise TrainingError(f"answer tokens of {q.answer!r} do not tokenise the same inside the chat")
            labels[row, -n:] = inputs.input_ids[row, -n:]
        return inputs, labels

    # -------------------------------------------------------------------------- frozen-feature cache
    def _prepare_feature_cache(self) -> None:
        """Compute (or reload) every frame's VLM hidden states ``[start:end]`` and raw DINO tokens once.

        Stored stacked, one ``[N, L, H]`` tensor per layer, each row left-padded to the longest prompt
        with its true length in ``lengths``: tens of thousands of frames load and index as a few large
        tensors instead of a list of small ones. Afterwards the raw frames are no longer needed and are
        released (they are the largest thing in memory)."""
        import torch

        m, data = self.model, self.data
        path = self.out / "feature_cache.pt"
        dtype = getattr(torch, self.cfg.feature_cache_dtype)
        key = {"data": data.fingerprint(), "prompt": self.cfg.spatial_prompt, "layout": 2}
        if dtype != torch.float32:  # a float32 cache keeps the key of the runs made before this option
            key["dtype"] = self.cfg.feature_cache_dtype
        if path.is_file():
            cache = torch.load(path, map_location="cpu", weights_only=False)
            if cache.get("key") == key:
                self.cache = cache
                data.release_images(keep_dino=self.cfg.train_dino)
                return
        start, end = m.config.qformer_start_layer, m.config.qformer_end_layer
        prompts = [m.train_prompt(t, self.cfg.spatial_prompt) for t in data.instructions]
        by_prompt: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            by_prompt.setdefault(p, []).append(i)
        # the packed length of each prompt group (text + image tokens), from the processor alone
        lengths = torch.zeros(len(data), dtype=torch.long)
        for prompt, frames in by_prompt.items():
            lengths[torch.as_tensor(frames)] = self._vlm_inputs(frames[:1], [prompt]).input_ids.shape[1]
        longest = int(lengths.max())
        hidden: list[torch.Tensor] = []
        dino: torch.Tensor | None = None
        bar = _progress(len(data), "caching VLM + DINO features", self.cfg.progress, "frame")
        with torch.no_grad():
            for prompt, frames in by_prompt.items():  # one prompt per group: no padding inside a batch
                for k in range(0, len(frames), 16):
                    chunk = frames[k : k + 16]
                    states = m.vlm_hidden_states(self._vlm_inputs(chunk, [prompt] * len(chunk)))
                    feats, _ = m.dino_tokens_from_pixels(self._dino_pixels(chunk), len(chunk))
                    layers = states[start:end]
                    self._check_cache_range([*layers, feats], dtype)
                    if dino is None:
                        hidden = [torch.zeros(len(data), longest, h.shape[-1], dtype=dtype) for h in layers]
                        dino = torch.zeros(len(data), *feats.shape[1:], dtype=dtype)
                    idx = torch.as_tensor(chunk)
                    n = layers[0].shape[1]
                    for store, h in zip(hidden, layers):
                        store[idx, longest - n :] = h.cpu().to(dtype)
                    dino[idx] = feats.cpu().to(dtype)
                    if bar is not None:
                        bar.update(len(chunk))
        if bar is not None:
            bar.close()
        self.cache = {"key": key, "hidden": hidden, "lengths": lengths, "dino": dino}
        torch.save(self.cache, path)
        data.release_images(keep_dino=self.cfg.train_dino)

    def _check_cache_range(self, tensors, dtype) -> None:
        """A feature that the cache's ``dtype`` cannot hold would train on inf: stop and say what to do."""
        import torch

        largest = torch.finfo(dtype).max
        peak = max(float(t.detach().abs().max()) for t in tensors)
        if peak > largest:
            raise TrainingError(
                f"a cached feature reaches {peak:.3g}, beyond {self.cfg.feature_cache_dtype}'s range "
                f"({largest:.3g}): rerun with --feature-cache-dtype float32"
            )

    def _cached_condition(self, frames: list[int]):
        import torch

        idx = torch.as_tensor(frames)
        lengths = self.cache["lengths"][idx]
        longest = int(lengths.max())
        layers = [h[idx, h.shape[1] - longest :].float() for h in self.cache["hidden"]]
        # left padding inside the batch is masked out of the QFormer's attention
        mask = torch.arange(longest)[None, :] < (longest - lengths)[:, None]
        masked = mask if mask.any() else None
        if self.cfg.train_dino:  # DINO learns: its tokens from the frames, with gradients
            dino, _ = self.model.dino_tokens_from_pixels(self._dino_pixels(frames), len(frames))
        else:
            dino = self.cache["dino"][idx].float()
        return self.model.condition_from_features(layers, dino, masked)

    # ------------------------------------------------------------------------------------------ step
    def compute_loss(self, step: int) -> dict[str, Any]:
        import torch

        cfg, m, data = self.cfg, self.model, self.data
        if cfg.stage == 0:
            return self._vision_loss(step)
        if cfg.stage == 1:
            inputs, labels = self._qa_batch(step, cfg.batch_size, 1)
            loss = m.vlm_loss(inputs, labels)
            return {"loss": loss, "vlm_loss": loss.detach()}
        frames = batch_indices(len(data), cfg.batch_size, step, cfg.seed)
        actions = torch.from_numpy(data.chunks[frames]).to(self.device)
        if cfg.freeze_vlm:
            cond = self._cached_condition(frames)
        else:
            prompts = [m.train_prompt(data.instructions[f], cfg.spatial_prompt) for f in frames]
            cond = m.train_condition(self._vlm_inputs(frames, prompts), self._dino_pixels(frames))
        if self.condition_norm is not None:
            self.condition_norm.update(cond.detach())
        action_loss = m.action_loss(
            cond, actions, cfg.repeated_diffusion_steps, cfg.cond_drop_prob, self.generator
        )
        out = {"loss": action_loss, "action_loss": action_loss.detach()}
        if self.spatial_readout is not None:
            spatial = self._spatial_loss(cond, frames)
            if spatial is not None:
                out["loss"] = out["loss"] + cfg.spatial_aux_weight * spatial
                out["spatial_loss"] = spatial.detach()
        if cfg.vlm_loss_weight > 0 and not cfg.freeze_vlm:
            inputs, labels = self._qa_batch(step, cfg.vlm_batch_size or cfg.batch_size, 2)
            vlm_loss = m.vlm_loss(inputs, labels)
            out["loss"] = action_loss + cfg.vlm_loss_weight * vlm_loss
            out["vlm_loss"] = vlm_loss.detach()
        return out

    def fit(self, on_step: Callable[[int], None] | None = None) -> Path:
        """Train to ``cfg.steps``; returns the final model path. ``on_step(step)`` runs after each
        completed step (a KeyboardInterrupt raised there is handled like Ctrl-C)."""
        import torch

        cfg = self.cfg
        step = self.start_step
        bar = _progress(cfg.steps, f"stage {cfg.stage}", cfg.progress, "step", initial=step)
        last_saved = step if self.resume else None
        try:
            while step < cfg.steps:
                t0 = time.perf_counter()
                losses = self.compute_loss(step)
                value = float(losses["loss"].detach())
                if not math.isfinite(value) or value > cfg.max_loss:
                    where = (
                        f"the last good checkpoint is {self._ckpt_path(last_saved)}"
                        if last_saved is not None
                        else "no checkpoint was saved yet"
                    )
                    raise TrainingDivergedError(
                        f"loss {value} at step {step} ({'not finite' if not math.isfinite(value) else f'above --max-loss {cfg.max_loss}'}); "
                        f"stopping without saving this state: {where}. Lower the learning rates or resume "
                        "from that checkpoint with --resume after fixing the cause"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                step += 1
                dt = time.perf_counter() - t0
                lr = self.optimizer.param_groups[0]["lr"]
                record = {
                    "step": step,
                    "loss": value,
                    "action_loss": float(losses["action_loss"]) if "action_loss" in losses else None,
                    "vlm_loss": float(losses["vlm_loss"]) if "vlm_loss" in losses else None,
                    "spatial_loss": float(losses["spatial_loss"]) if "spatial_loss" in losses else None,
                    "vision_loss": float(losses["vision_loss"]) if "vision_loss" in losses else None,
                    "grad_norm": float(grad_norm),
                    "lr": lr,
                    "s_per_step": dt,
                }
                for part in self.vision_parts:  # stage 0: each dense map's loss
                    value_part = losses.get(f"vision_{part}")
                    record[f"vision_{part}"] = None if value_part is None else float(value_part)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    self._log(record)
                if bar is not None:
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
                    bar.update(1)
                if step % cfg.save_every == 0 or step == cfg.steps:
                    self.save(step)
                    last_saved = step
                if on_step is not None:
                    on_step(step)
        except KeyboardInterrupt:
            if last_saved != step:
                self.save(step)
            raise
        finally:
            if bar is not None:
                bar.close()
        final = self.out / "final_model" / "pytorch_model.pt"
        final.parent.mkdir(exist_ok=True)
        shutil.copyfile(self._ckpt_path(step), final)
        self.plot()
        return final

    # --------------------------------------------------------------------------------------- metrics
    def _log(self, record: dict) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self._log_csv_only(record)

    def _truncate_metrics(self, step: int) -> None:
        """Drop records past the resumed step (they were logged after the last checkpoint)."""
        path = self.out / "metrics.jsonl"
        if path.is_file():
            keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in keep))
        csv_path = self.out / "metrics.csv"
        if csv_path.is_file():
            with open(csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
            csv_path.unlink()
            for r in rows:
                self._log_csv_only(r)

    def _log_csv_only(self, record: dict) -> None:
        path = self.out / "metrics.csv"
        new = not path.is_file()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(record))
            if new:
                writer.writeheader()
            writer.writerow(record)

    def plot(self) -> Path | None:
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = [json.loads(line) for line in path.read_text().splitlines()]
        steps = [r["step"] for r in records]
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in ("loss", "action_loss", "vlm_loss"):
            values = [float("nan") if r.get(key) is None else r[key] for r in records]
            if any(math.isfinite(v) for v in values):
                ax.plot(steps, values, label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.set_title(f"{self.out.name}: stage {self.cfg.stage}")
        ax.legend()
        fig.tight_layout()
        out = self.out / "loss_curve.png"
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return out


def train(cfg: TrainConfig, resume: bool = False, on_step: Callable[[int], None] | None = None) -> Path:
    """Set up and run one training run; returns ``<run>/final_model/pytorch_model.pt``."""
    if resume:
        saved = Path(cfg.out) / TRAIN_ARGS
        if saved.is_file():  # the run's own arguments: the schedule and data order must not change
            stored = json.loads(saved.read_text())
            stored.update(out=cfg.out, progress=cfg.progress, device=cfg.device)
            cfg = TrainConfig(**stored)
    trainer = Trainer(cfg, resume=resume)
    trainer.setup()
    return trainer.fit(on_step)


def main(argv: list[str] | None = None) -> int:
    from internvla_core.model.checkpoint import CheckpointError, CheckpointMismatchError

    from .data import DatasetError

    ns = parse_args(argv)
    cfg = config_from_args(ns)
    try:
        final = train(cfg, resume=ns.resume)
    except TrainingDivergedError as exc:
        print(f"internvla-train: diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(
            f"internvla-train: interrupted; state saved in {cfg.out}; continue with "
            f"`internvla-train --out {cfg.out} --resume`",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (TrainingError, DatasetError, CheckpointError, CheckpointMismatchError) as exc:
        print(f"internvla-train: {exc}", file=sys.stderr)
        return 2
    print(f"final model: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
