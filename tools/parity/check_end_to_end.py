#!/usr/bin/env python3
"""End-to-end parity of our InternVLA-M1 with upstream's own code (developer tool; CI never runs it).

Loads the fixture checkpoint that upstream's code produced (see the "end to end" section of
tools/parity/README.md) with OUR ``load_policy``, feeds the fixture's images, instructions and fixed
initial noise, and compares every stage with ``reference.npz``: token ids and pixel values, all LLM
hidden states, DINO input/features/projection, QFormer output, the DiT condition and every DDIM step,
normalised and un-normalised actions, the DDIM schedule, and the greedy chat (grounding) token ids.

Cases: b1_s0, b1_s1 (one sample each) and b2 (both in one left-padded batch; padded positions reach the
QFormer unmasked, as upstream, and their values only match with eager attention, which this tool
selects for b2).

Usage:
    python tools/parity/check_end_to_end.py [--fixture /work/m1harness/fixture] [--save mine.npz]
Exit status 1 when an intermediate differs by more than --atol (1e-5), actions by more than
--atol-actions (1e-4), or any integer tensor differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src" / "internvla_core"))

from internvla_core.model import load_policy  # noqa: E402
from internvla_core.normalization import action_stats, unnormalize_actions  # noqa: E402

ACTION_KEYS = ("normalized_actions", "unnorm_", "dit_x")
"""Tensors on the action scale get the action tolerance: ``dit_x`` is the DDIM state x_t (actions plus
noise, magnitudes up to ~25 with a random model, so float32 rounding alone reaches ~1e-5 there)."""
CASE_IMAGES = {"b1_s0": ["image0"], "b1_s1": ["image1"], "b2": ["image0", "image1"]}


class Report:
    def __init__(self, atol: float, atol_actions: float) -> None:
        self.atol, self.atol_actions = atol, atol_actions
        self.rows: list[tuple[str, str, float, float, bool]] = []
        self.mine: dict[str, np.ndarray] = {}

    def compare(self, key: str, ref: np.ndarray, ours: np.ndarray | torch.Tensor) -> None:
        ours = (
            ours.detach().float().cpu().numpy()
            if torch.is_tensor(ours) and ours.is_floating_point()
            else (ours.detach().cpu().numpy() if torch.is_tensor(ours) else np.asarray(ours))
        )
        self.mine[key] = ours
        if ref.shape != ours.shape:
            self.rows.append((key, f"SHAPE {ref.shape} vs {ours.shape}", float("inf"), 0.0, False))
            return
        if np.issubdtype(ref.dtype, np.integer) or ref.dtype == bool:
            n_bad = int((ref != ours).sum())
            self.rows.append((key, f"{n_bad} mismatches", float(n_bad), 0.0, n_bad == 0))
            return
        diff = float(np.abs(ref.astype(np.float64) - ours.astype(np.float64)).max()) if ref.size else 0.0
        tol = self.atol_actions if any(a in key for a in ACTION_KEYS) else self.atol
        self.rows.append((key, f"max abs {diff:.3e}", diff, tol, diff <= tol))

    def print(self) -> bool:
        width = max(len(r[0]) for r in self.rows)
        for key, text, _, tol, ok in self.rows:
            tol_text = f"(tol {tol:.0e})" if tol else "(exact)"
            print(f"{'ok  ' if ok else 'FAIL'} {key:<{width}}  {text:<22} {tol_text}")
        failed = [r[0] for r in self.rows if not r[4]]
        worst = max((r[2] for r in self.rows if r[3]), default=0.0)
        print(f"\n{len(self.rows)} comparisons, {len(failed)} failed; worst float diff {worst:.3e}")
        return not failed


def run_case(policy, case: str, ref, meta, settings, report: Report) -> None:
    model = policy.model
    qwen = model.qwen_vl_interface.model
    views = [[Image.fromarray(ref[name])] for name in CASE_IMAGES[case]]
    instructions = meta[case]["instructions"]
    record: dict = {}
    impl = "eager" if case == "b2" else "sdpa"
    qwen.set_attn_implementation(impl)
    try:
        model.predict_action(
            views,
            instructions,
            cfg_scale=settings["cfg_scale"],
            num_ddim_steps=settings["num_ddim_steps"],
            initial_noise=torch.from_numpy(ref[f"{case}_noise"]),
            record=record,
        )
    finally:
        qwen.set_attn_implementation("sdpa")
    p = f"{case}_"
    inputs = record["inputs"]
    for name in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"):
        report.compare(p + name, ref[p + name], getattr(inputs, name))
    report.compare(
        p + "hidden_states_all", ref[p + "hidden_states_all"], torch.stack(record["hidden_states"])
    )
    resized = [img for v in views for img in model.resize_views(v)]
    report.compare(p + "dino_input", ref[p + "dino_input"], model.dino_encoder.preprocess(resized))
    report.compare(p + "dino_features", ref[p + "dino_features"], record["dino_features"])
    report.compare(p + "dino_proj", ref[p + "dino_proj"], record["dino_projected"])
    report.compare(p + "qformer_out", ref[p + "qformer_out"], record["qformer_out"])
    cond = record["qformer_out"]
    if settings["cfg_scale"] > 1.0:
        uncond = model.action_model.net.z_embedder.uncondition
        cond = torch.cat([cond, uncond.unsqueeze(0).expand(cond.shape[0], -1, -1)], 0)
    report.compare(p + "dit_cond_z", ref[p + "dit_cond_z"], cond)
    steps = record["dit_steps"]
    report.compare(
        p + "dit_t",
        ref[p + "dit_t"],
        torch.stack([torch.as_tensor(s["t"]).reshape(-1) for s in steps]).expand(
            -1, ref[p + "dit_t"].shape[1]
        ),
    )
    report.compare(p + "dit_x", ref[p + "dit_x"], torch.stack([s["x_in"] for s in steps]))
    report.compare(p + "dit_out", ref[p + "dit_out"], torch.stack([s["eps"] for s in steps]))
    actions = record["normalized_actions"]
    report.compare(p + "normalized_actions", ref[p + "normalized_actions"], actions)
    for key in settings["unnorm_keys"]:
        stats = action_stats(policy.norm_stats, key)
        ours = np.stack([unnormalize_actions(a, stats) for a in actions])
        report.compare(f"{p}unnorm_{key}", ref[f"{p}unnorm_{key}"], ours)


def run_schedule(ref, settings, report: Report) -> None:
    from internvla_core.model.diffusion import base_alphas_cumprod, ddim_schedule

    schedule = ddim_schedule(int(settings["num_ddim_steps"]))
    report.compare("ddim_timestep_map", ref["ddim_timestep_map"], np.asarray(schedule.timesteps))
    report.compare("ddim_alphas_cumprod", ref["ddim_alphas_cumprod"], np.asarray(schedule.alphas_cumprod))
    report.compare(
        "ddim_alphas_cumprod_prev", ref["ddim_alphas_cumprod_prev"], np.asarray(schedule.alphas_cumprod_prev)
    )
    report.compare("base_alphas_cumprod", ref["base_alphas_cumprod"], base_alphas_cumprod())


def run_chat(policy, ref, meta, report: Report) -> None:
    chat = meta["chat"]
    text, inputs, new_ids = policy.model.chat(
        Image.fromarray(ref["image0"]), chat["prompt_user_text"], max_new_tokens=chat["max_new_tokens"]
    )
    report.compare("chat_input_ids", ref["chat_input_ids"], inputs.input_ids)
    report.compare("chat_attention_mask", ref["chat_attention_mask"], inputs.attention_mask)
    report.compare("chat_pixel_values", ref["chat_pixel_values"], inputs.pixel_values)
    report.compare("chat_image_grid_thw", ref["chat_image_grid_thw"], inputs.image_grid_thw)
    report.compare("chat_new_token_ids", ref["chat_new_token_ids"], new_ids)
    full = torch.cat([inputs.input_ids, new_ids], dim=1)
    report.compare("chat_generated_ids", ref["chat_generated_ids"], full)
    expected = chat.get("decoded_skip_special", [None])[0]
    if expected is not None:
        same = text == expected
        report.rows.append(
            ("chat_decoded_text", "identical" if same else f"{text!r} != {expected!r}", 0.0, 0.0, same)
        )


def run_probe(policy, ref, settings, report: Report) -> None:
    probe = ref["unnorm_probe_input"]
    for key in settings["unnorm_keys"]:
        report.compare(
            f"unnorm_probe_{key}",
            ref[f"unnorm_probe_{key}"],
            unnormalize_actions(probe, action_stats(policy.norm_stats, key)),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixture", type=Path, default=Path("/work/m1harness/fixture"))
    parser.add_argument("--run-dir", type=Path, default=None, help="default: the fixture's only run dir")
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--atol-actions", type=float, default=1e-4)
    parser.add_argument("--cases", nargs="+", default=["b1_s0", "b1_s1", "b2"])
    parser.add_argument("--save", type=Path, default=None, help="write our tensors (reference key names)")
    args = parser.parse_args()

    ref = np.load(args.fixture / "outputs" / "reference.npz")
    meta = json.loads((args.fixture / "outputs" / "meta.json").read_text())
    settings = meta["settings"]
    run_dir = args.run_dir or next(p.parent for p in args.fixture.glob("*/config.yaml"))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    policy = load_policy(run_dir)
    print(f"fixture {args.fixture}  run {run_dir}  checkpoint {policy.checkpoint_path.name}")
    print(
        f"cfg_scale {settings['cfg_scale']}  ddim steps {settings['num_ddim_steps']}  "
        f"qformer layers {policy.config.qformer_start_layer}:{policy.config.qformer_end_layer}\n"
    )
    report = Report(args.atol, args.atol_actions)
    for case in args.cases:
        run_case(policy, case, ref, meta, settings, report)
    run_schedule(ref, settings, report)
    run_probe(policy, ref, settings, report)
    run_chat(policy, ref, meta, report)
    ok = report.print()
    if args.save:
        np.savez(args.save, **report.mine)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
