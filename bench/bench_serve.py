#!/usr/bin/env python3
"""internvla-serve under load: queries/s, p50/p99 latency and peak memory for 1, 2, 4, 8 concurrent clients.

Each client is a thread with its own websocket connection (our ``RemotePolicyClient``) that sends one
single-view 224x224 query after the other, as a robot does; the server batches across clients
(``--max-batch``, ``--max-wait-ms``). Latency is the client's round trip. Memory: peak RSS of this
process (server and clients share it) and, on CUDA, ``torch.cuda.max_memory_allocated`` per row.

Configurations: ``tiny`` (the tiny factory model: CPU-sized, the numbers show the server's overhead and
batching, not a GPU's speed) and ``full`` (the real 3B shapes: Qwen2.5-VL-3B text 36x2048 and vision
32x1280, DINOv2 ViT-L/14, QFormer, DiT-B; randomly initialised on the GPU, no download; CUDA only).

    python bench/bench_serve.py                              # tiny on CPU (+ full when CUDA is present)
    python bench/bench_serve.py --configs full --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src" / "internvla_core"))

from internvla_core.latency import percentile
from internvla_core.model import load_policy, tiny_checkpoint
from internvla_core.remote import RemotePolicyClient
from internvla_core.serving.engine import BatchEngine
from internvla_core.serving.server import PolicyServer

STAGES = ("preprocess", "vlm", "dino", "qformer", "dit")
INSTRUCTIONS = ("put the carrot on the plate", "pick up the red block and place it in the bowl")


def full_size_policy(device: str, dtype: torch.dtype):
    """The 3B configuration with random weights, built on the GPU (writing a 15 GB checkpoint would take
    longer than the benchmark). Reuses the tiny factory's run-dir writer, then sets the real widths."""
    from internvla_core.model.config import load_run_config
    from internvla_core.model.framework import InternVLAM1
    from internvla_core.model.policy import InternVLAPolicy
    from internvla_core.model.tiny import TinySpec, _dataset_statistics, _run_config, _write_base_vlm

    spec = TinySpec(
        text_layers=36,
        text_hidden=2048,
        text_heads=16,
        text_kv_heads=2,
        vision_depth=32,
        vision_hidden=1280,
        vision_heads=16,
        dino_dims=None,
        dino_backbone="dinov2_vitl14",
        dit_dims=None,
        action_model_type="DiT-B",
        qformer_layers=(36, 37),
    )
    run = Path(tempfile.mkdtemp(prefix="bench-serve-full-"))
    _write_base_vlm(run / "vlm", spec)
    vlm_config = json.loads((run / "vlm" / "config.json").read_text())
    vlm_config.update(intermediate_size=11008, vocab_size=151936)  # Qwen2.5-VL-3B's
    vlm_config["vision_config"].update(intermediate_size=3420, fullatt_block_indexes=[7, 15, 23, 31])
    (run / "vlm" / "config.json").write_text(json.dumps(vlm_config))
    cfg = _run_config(spec, run.name)
    cfg["framework"]["qwenvl"]["base_vlm"] = str(run / "vlm")
    import yaml

    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    stats = _dataset_statistics(spec.action_dim)
    (run / "dataset_statistics.json").write_text(json.dumps(stats))
    config = load_run_config(run)
    model = InternVLAM1(config, run / "vlm", init_weights=False)
    model.to(device=device, dtype=torch.float32 if dtype is None else dtype)
    if dtype is None:  # upstream's policy on CUDA: bf16 VLM, float32 heads
        model.qwen_vl_interface.model.to(torch.bfloat16)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                param.normal_(0.0, 0.02, generator=generator)
            elif "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            else:
                param.zero_()
    model.eval()
    return InternVLAPolicy(model, stats, run / "random_init", dtype or torch.float32)


def batch_vs_single(engine: BatchEngine) -> float:
    """Largest |difference| between a batch of 4 seeded queries of different prompt lengths and the
    same queries one at a time (the serving batcher's correctness; exact up to float rounding on CPU)."""
    from internvla_core.serving.protocol import InferRequest, Sample

    frames = [np.random.default_rng(50 + i).integers(0, 256, (224, 224, 3), dtype=np.uint8) for i in range(4)]
    texts = ["pick", "put the carrot on the plate", "open the top drawer and put the apple inside", "stack"]
    requests = [
        InferRequest("internvla-m1", i, [Sample([frames[i]], texts[i])], None, 1.5, 10, seed=i)
        for i in range(4)
    ]
    together = engine.run(requests)
    alone = [engine.run([r])[0] for r in requests]
    return max(float(np.abs(a - b).max()) for a, b in zip(together, alone))


def run_row(server: PolicyServer, clients: int, requests: int, steps: int) -> dict:
    connections = [RemotePolicyClient(server.url, reply_timeout=600) for _ in range(clients)]
    for c in connections:
        c.connect()
    frames = [
        np.random.default_rng(i).integers(0, 256, (224, 224, 3), dtype=np.uint8) for i in range(clients)
    ]
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def robot(i: int) -> None:
        barrier.wait()
        for r in range(requests):
            start = time.perf_counter()
            connections[i].infer([frames[i]], INSTRUCTIONS[(i + r) % 2], "oxe_bridge", 1.5, steps)
            with lock:
                latencies.append(time.perf_counter() - start)

    stats = server.batcher.stats
    jobs0, batches0 = stats.jobs, stats.batches
    stages0 = dict(server.engine.stage_seconds)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    threads = [threading.Thread(target=robot, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in connections:
        c.close()
    row = {
        "clients": clients,
        "queries": len(latencies),
        "qps": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "mean_batch": (stats.jobs - jobs0) / max(1, stats.batches - batches0),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if torch.cuda.is_available():
        row["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    batches = max(1, stats.batches - batches0)
    row["stages_ms"] = {
        k: 1000 * (v - stages0.get(k, 0.0)) / batches for k, v in server.engine.stage_seconds.items()
    }
    return row


def main() -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,full" if cuda else "tiny")
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=4, help="queries per client per row")
    parser.add_argument("--ddim-steps", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument(
        "--compile",
        default="off",
        help="comma list of DiT compile modes to run in turn: off,default,reduce-overhead",
    )
    args = parser.parse_args()
    dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, dtype {args.dtype}"
    )
    print(
        f"{args.requests} queries per client, {args.ddim_steps} DDIM steps, cfg 1.5, 1 view 224x224, "
        f"max_batch {args.max_batch}, max_wait {args.max_wait_ms} ms"
    )
    header = f"{'config':<6} {'clients':>7} {'queries':>7} {'q/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'batch':>6} {'rss MB':>8}"
    for name in args.configs.split(","):
        if name == "full" and not args.device.startswith("cuda"):
            print("full: skipped (CUDA only)")
            continue
        t0 = time.perf_counter()
        if name == "tiny":
            policy = load_policy(tiny_checkpoint(), device=args.device, dtype=dtype)
        else:
            policy = full_size_policy(args.device, dtype)
        params = sum(p.numel() for p in policy.model.parameters()) / 1e6
        print(f"\n{name}: {params:.0f}M parameters, built in {time.perf_counter() - t0:.1f} s")
        engine = BatchEngine(policy, seed=0)
        print(f"batch of 4 vs one at a time, max |normalised difference|: {batch_vs_single(engine):.2e}")
        server = PolicyServer(
            engine, port=0, max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000.0, request_timeout=600
        ).start()
        stage_rows: list = []
        try:
            for mode in args.compile.split(","):
                label = name if mode == "off" else f"{name}+compile:{mode}"
                if mode != "off":
                    engine.compile_action_head(mode)
                t_warm = time.perf_counter()
                run_row(server, 1, 2, args.ddim_steps)  # warm-up (allocator, kernels, compilation)
                for size in sorted({1, 2, min(4, args.max_batch), args.max_batch}):  # compile/graph shapes
                    run_row(server, size, 1, args.ddim_steps)
                print(f"{label}: warm-up {time.perf_counter() - t_warm:.1f} s")
                print(header + ("  cuda peak MB" if args.device.startswith("cuda") else ""))
                for clients in (int(c) for c in args.clients.split(",")):
                    row = run_row(server, clients, args.requests, args.ddim_steps)
                    line = (
                        f"{label:<6} {row['clients']:>7} {row['queries']:>7} {row['qps']:>8.2f} "
                        f"{row['p50_ms']:>9.1f} {row['p99_ms']:>9.1f} {row['mean_batch']:>6.2f} {row['rss_mb']:>8.0f}"
                    )
                    if "cuda_peak_mb" in row:
                        line += f"  {row['cuda_peak_mb']:>12.0f}"
                    print(line, flush=True)
                    stage_rows.append((label, row["clients"], row["stages_ms"]))
            print("per batch, ms: " + ", ".join(STAGES))
            for label, clients, stages in stage_rows:
                print(f"  {label} x{clients}: " + ", ".join(f"{stages.get(s, 0.0):.1f}" for s in STAGES))
        finally:
            server.close()
            policy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
