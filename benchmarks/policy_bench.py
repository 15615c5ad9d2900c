"""Policy speed benchmark: parameters, CPU latency per chunk, training throughput. Prints JSON.

Rows: each preset x sampler with 2 cameras at the preset's benchmark image size, 2 observation
steps and a 64-step horizon; plus the fixed reference model (U-Net down_dims 256/512/1024,
2 cameras 3x120x160, 14-dim state, 2 observation steps, horizon 64, DDIM 10 steps) on every
inference path (``inference_paths``: fp32 / bf16, eager / traced / compiled), and the path
``select_inference_path`` (what the policy node runs) picks.

Each reference row has ``floor_ratio`` = p50 / this machine's floor for a chunk, measured in
the same run (``floor``): the roofline max(FLOPs / peak matmul rate, weight bytes streamed /
memory read bandwidth) in bf16 where the CPU has native bf16, else in fp32. At batch 1 every
denoising step streams all the weights for 16-64 time steps of work, so the bandwidth term is
the larger one; ``floor_ratio_compute`` is against the FLOP term alone. Target: floor_ratio
<= 2.

    python benchmarks/policy_bench.py --threads 2 --repeats 10 [--quick] [--out bench.json]
    python benchmarks/policy_bench.py --checkpoint CKPT [--checkpoint CKPT2] [--out bench.json]

``--checkpoint`` measures shipped checkpoints instead of the preset rows: chunk latency at the
checkpoint's own shapes (fp32, and bf16 where the CPU has native bf16) and training samples/s
with the checkpoint's config (batch 64, fp32 and bf16 autocast), each dtype in the same run.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time

import numpy as np
import torch

from action_diffusion_policy.checkpoint import load_policy
from action_diffusion_policy.config import PolicyConfig
from action_diffusion_policy.hardware import autocast, cpu_has_native_bf16
from action_diffusion_policy.inference_paths import (
    PATH_NAMES,
    apply_path,
    candidate_paths,
    normalized_error,
    select_inference_path,
    step_relative_error,
)
from action_diffusion_policy.policy import ActionChunkPolicy
from action_diffusion_policy.types import Observation

HORIZON = 64
N_OBS = 2
CAMERAS = ["cam_high", "cam_left_wrist"]
STATE_SLOTS = [0, 1, 2, 3, 4, 5, 10, 50, 51, 52, 53, 54, 55, 60]  # 14-dim bimanual (ALOHA)
# Benchmark image size per preset: small uses Chi et al.'s 84x84 crop of 96x96 frames.
IMAGE_SIZE = {"tiny": (48, 64), "small": (84, 84), "reference": (120, 160)}
SAMPLERS = [  # (head, sampler, prediction_type, steps)
    ("ddpm", "ddim", "epsilon", 10),
    ("ddpm", "dpmsolver++", "sample", 5),
    ("ddpm", "ddpm", "epsilon", 10),
    ("flow", "euler", "epsilon", 10),
]


JIT = True  # traced denoising step (ActionChunkPolicy.enable_jit), the recommended CPU path


def make_policy(backbone: str, size: str, head, image_size, cameras=CAMERAS) -> ActionChunkPolicy:
    h, sampler, pred, steps = head
    cfg = PolicyConfig(backbone=backbone, size=size, head=h, sampler=sampler,
                       prediction_type=pred, num_train_timesteps=100,
                       num_inference_steps=steps, horizon=HORIZON, n_obs_steps=N_OBS,
                       camera_names=list(cameras), image_size=image_size,
                       state_slots=STATE_SLOTS, action_slots=STATE_SLOTS)
    return ActionChunkPolicy(cfg).eval().enable_jit(JIT)


def make_obs(policy: ActionChunkPolicy, seed: int = 0) -> Observation:
    cfg = policy.config
    rng = np.random.default_rng(seed)
    mask = np.zeros(128, bool)
    mask[cfg.state_slots] = True
    h, w = cfg.image_size or (8, 8)
    t = cfg.n_obs_steps
    env = (rng.normal(size=(t, cfg.env_state_dim)).astype(np.float32)
           if cfg.env_state_dim else None)
    return Observation(
        images={c: rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
                for c in cfg.camera_names},
        state=rng.normal(size=(t, 128)).astype(np.float32), state_mask=mask, env_state=env)


def latency_ms(policy: ActionChunkPolicy, repeats: int, warmup: int = 2) -> dict:
    obs = make_obs(policy)
    for _ in range(warmup):
        policy.predict_chunk(obs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        policy.predict_chunk(obs)
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1)}


def train_samples_per_s(policy: ActionChunkPolicy, batch_size: int, steps: int,
                        precision: str = "fp32") -> float:
    cfg = policy.config
    h, w = cfg.image_size or (8, 8)
    t_obs = cfg.n_obs_steps
    batch = {"images": torch.randint(0, 256, (batch_size, len(cfg.camera_names), t_obs, 3, h, w),
                                     dtype=torch.uint8),
             "state": torch.randn(batch_size, t_obs, 128),
             "action": torch.randn(batch_size, cfg.horizon, 128)}
    if cfg.env_state_dim:
        batch["env_state"] = torch.randn(batch_size, t_obs, cfg.env_state_dim)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with autocast(precision, "cpu"):
            loss = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # first step warms up allocators
            times.append(time.perf_counter() - t)
    policy.eval()
    return round(batch_size / float(np.median(times)), 1)


def matmul_gflops(dtype: torch.dtype, n: int = 512, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return round(2 * n**3 * reps / (time.perf_counter() - t) / 1e9, 1)


def peak_matmul_gflops(dtype: torch.dtype) -> float:
    """The best square-matmul rate over a few sizes (the compute roof)."""
    return max(matmul_gflops(dtype, n) for n in (512, 1024, 2048))


def read_bandwidth_gb_s(nbytes: int, reps: int = 5) -> float:
    """Best read rate over a buffer of ``nbytes`` (the model's weights' size): a sum streams it
    once (the bandwidth roof for weights that do not stay in cache)."""
    buf = torch.ones(max(nbytes, 1 << 24) // 4)
    buf.sum()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - t)
    return round(buf.numel() * 4 / best / 1e9, 1)


def chunk_cost(policy: ActionChunkPolicy) -> dict:
    """FLOPs of one chunk (counted on the eager float32 path) and the weight bytes it streams
    per dtype: the encoder's once, the backbone's once per denoising step."""
    from torch.utils.flop_counter import FlopCounterMode

    obs = make_obs(policy)
    policy.enable_jit(False)
    with FlopCounterMode(display=False) as counter:
        policy.predict_chunk(obs)
    steps = policy.config.num_inference_steps
    numel = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
    per_chunk = numel(policy.backbone) * steps + numel(policy.image_encoder)
    return {"gflop": round(counter.get_total_flops() / 1e9, 2), "weight_elements": per_chunk,
            "backbone_elements": numel(policy.backbone)}


def floors(cost: dict, peak: dict, bandwidth: float) -> dict:
    out = {}
    for dtype, size in (("fp32", 4), ("bf16", 2)):
        compute = cost["gflop"] / peak[dtype] * 1e3
        memory = cost["weight_elements"] * size / bandwidth / 1e6
        out[dtype] = {"compute_ms": round(compute, 1), "memory_ms": round(memory, 1),
                      "floor_ms": round(max(compute, memory), 1)}
    return out


def reference_rows(repeats: int, native_bf16: bool) -> tuple[list[dict], dict]:
    ddim = SAMPLERS[0]
    base = make_policy("unet", "reference", ddim, IMAGE_SIZE["reference"])
    cost = chunk_cost(base)
    peak = {"fp32": peak_matmul_gflops(torch.float32), "bf16": peak_matmul_gflops(torch.bfloat16)}
    bandwidth = read_bandwidth_gb_s(cost["backbone_elements"] * 2)
    floor = {"cost": cost, "peak_matmul_gflops": peak, "read_bandwidth_gb_s": bandwidth,
             "by_dtype": floors(cost, peak, bandwidth),
             "dtype": "bf16" if native_bf16 else "fp32"}
    machine_floor = floor["by_dtype"][floor["dtype"]]
    print(json.dumps({"floor": floor}), flush=True)
    obs = make_obs(base)
    noise = np.random.default_rng(0).standard_normal((HORIZON, base.config.action_dim))
    base.enable_jit(False)
    ref_chunk = base.predict_chunk(obs, noise=noise)
    _, skipped = candidate_paths(base)
    rows = [{"name": "reference_unet_256_512_1024_2cam_120x160_h64_ddim10", "path": name,
             "skipped": why} for name, why in skipped.items()]
    wanted = ["fp32", "fp32-jit", "bf16-jit", "fp32-compile", "bf16-compile", "bf16-autotune"]
    runnable = [p for p in wanted
                if not (p.startswith("bf16") and "bf16" in skipped)
                and not (p.endswith(("compile", "autotune")) and "compile" in skipped)]
    for path in runnable:
        policy = apply_path(copy.deepcopy(base), path)
        t = time.perf_counter()
        chunk = policy.predict_chunk(obs, noise=noise)
        first_s = time.perf_counter() - t
        row = {"name": "reference_unet_256_512_1024_2cam_120x160_h64_ddim10", "path": path,
               "params_m": params_m(policy), "first_chunk_s": round(first_s, 2),
               **latency_ms(policy, repeats, warmup=1),
               "chunk_error_vs_fp32": round(normalized_error(base, chunk, ref_chunk), 4),
               "step_relative_error_vs_fp32": round(
                   step_relative_error(policy, base, make_obs(base)), 5)}
        row["floor_ratio"] = round(row["p50_ms"] / machine_floor["floor_ms"], 2)
        row["floor_ratio_compute"] = round(row["p50_ms"] / machine_floor["compute_ms"], 2)
        row["target_floor_ratio"] = 2.0
        rows.append(row)
        print(json.dumps(row), flush=True)
        del policy
    _, report = select_inference_path(base)
    rows.append({"name": "reference_unet_256_512_1024_2cam_120x160_h64_ddim10",
                 "path": "auto", "chosen": report.chosen, "selection": report.rows})
    print(json.dumps(rows[-1]), flush=True)
    return rows, floor


def params_m(policy: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in policy.parameters()) / 1e6, 2)


def checkpoint_rows(paths: list[str], repeats: int, train_steps: int) -> list[dict]:
    """Shipped checkpoints at their own shapes: latency and training speed per dtype."""
    rows = []
    for path in paths:
        for dtype in ("fp32", "bf16"):
            if dtype == "bf16" and not cpu_has_native_bf16():
                rows.append({"checkpoint": path, "dtype": dtype,
                             "skipped": "no native bf16 on this CPU (avx512_bf16/amx_bf16)"})
                continue
            policy = load_policy(path).eval().enable_jit(JIT)
            spec = policy.spec
            row = {"checkpoint": path, "checkpoint_id": spec.checkpoint_id, "dtype": dtype,
                   "camera_names": list(spec.camera_names), "image_size": spec.image_size,
                   "env_state_dim": spec.env_state_dim, "params_m": params_m(policy),
                   "train_samples_per_s_batch64": train_samples_per_s(
                       load_policy(path), 64, train_steps, precision=dtype)}
            if dtype == "bf16":
                policy.to_inference_dtype(torch.bfloat16)
            row.update(**latency_ms(policy, repeats))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", default=[],
                    help="measure this checkpoint instead of the preset rows (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10, help="timed chunks per row")
    ap.add_argument("--train-steps", type=int, default=3, help="timed training steps per row")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--backbones", nargs="*", default=["unet", "dit", "rdt"])
    ap.add_argument("--sizes", nargs="*", default=["tiny", "small"])
    ap.add_argument("--quick", action="store_true", help="only DDIM/Euler rows; 5 repeats")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--only-reference", action="store_true", help="skip the preset rows")
    ap.add_argument("--no-jit", action="store_true", help="eager denoising steps")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args()
    global JIT
    JIT = not a.no_jit
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    repeats = 5 if a.quick else a.repeats
    samplers = [s for s in SAMPLERS if not a.quick or s[1] in ("ddim", "euler")]
    if a.checkpoint:
        result = {"machine": {"cpu": platform.processor() or platform.machine(),
                              "threads": a.threads, "torch": torch.__version__,
                              "native_bf16": cpu_has_native_bf16(), "jit": JIT},
                  "checkpoints": checkpoint_rows(a.checkpoint, repeats, max(a.train_steps, 5))}
        text = json.dumps(result)
        print(text)
        if a.out:
            with open(a.out, "w") as f:
                f.write(text)
        return
    rows = []
    for backbone in [] if a.only_reference else a.backbones:
        for size in a.sizes:
            for head in samplers:
                policy = make_policy(backbone, size, head, IMAGE_SIZE[size])
                row = {"backbone": backbone, "preset": size, "head": head[0],
                       "sampler": head[1], "steps": head[3], "image_size": IMAGE_SIZE[size],
                       "params_m": params_m(policy), **latency_ms(policy, repeats)}
                if head == samplers[0]:  # training speed does not depend on the sampler
                    row["train_samples_per_s"] = train_samples_per_s(
                        policy, a.train_batch, a.train_steps)
                rows.append(row)
                print(json.dumps(row), flush=True)
    reference, floor = [], None
    if not a.no_reference:
        reference, floor = reference_rows(max(3, repeats // 2), cpu_has_native_bf16())
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": a.threads,
                    "torch": torch.__version__, "native_bf16": cpu_has_native_bf16()},
        "horizon": HORIZON, "n_obs_steps": N_OBS, "cameras": len(CAMERAS), "jit": JIT,
        "rows": rows, "floor": floor, "reference": reference, "paths": list(PATH_NAMES),
    }
    text = json.dumps(result)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
