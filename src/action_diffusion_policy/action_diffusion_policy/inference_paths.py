"""Inference paths (dtype x traced / compiled) and picking the fastest one that is correct.

A path is checked against the float32 eager chunk at the same observation and noise, in the
policy's normalized action units ([-1, 1] over the training data's range), and timed on this
machine; the fastest within its tolerance wins. float32 eager always qualifies, so there is
always a path. The policy node runs this at configure and logs the table.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from action_diffusion_policy.config import NUM_SLOTS
from action_diffusion_policy.hardware import cpu_has_native_bf16
from action_diffusion_policy.policy import ActionChunkPolicy, compiler_missing
from action_diffusion_policy.types import Observation

# Largest |fast - fp32 eager| allowed in normalized action units (the action range is 2):
# float32 reorderings stay near 1e-5; bf16 keeps 8 mantissa bits, and 0.05 is 1.25 % of the
# range, well inside the spread between two noise draws of a trained policy.
TOLERANCE = {"fp32": 1e-3, "bf16": 0.05}
# Compiling costs tens of seconds at start-up; it is tried only where a chunk is this slow.
COMPILE_MIN_CHUNK_MS = 50.0


@dataclass(frozen=True)
class InferencePath:
    dtype: str  # fp32 | bf16
    mode: str  # eager | jit | compile | autotune (compile, timing Inductor's GEMM kernels)

    @property
    def name(self) -> str:
        return self.dtype if self.mode == "eager" else f"{self.dtype}-{self.mode}"

    @classmethod
    def parse(cls, name: str) -> InferencePath:
        dtype, _, mode = name.partition("-")
        path = cls(dtype, mode or "eager")
        if path.dtype not in TOLERANCE or path.mode not in MODES:
            raise ValueError(f"inference path {name!r}: expected one of {PATH_NAMES} or 'auto'")
        return path


MODES = ("eager", "jit", "compile", "autotune")
PATH_NAMES = tuple(InferencePath(d, m).name for d in TOLERANCE for m in MODES)


def apply_path(policy: ActionChunkPolicy, path: InferencePath | str) -> ActionChunkPolicy:
    """Put ``policy`` (float32 weights) on ``path``, in place. bf16 casts the weights: keep a
    float32 copy if you need to go back."""
    path = InferencePath.parse(path) if isinstance(path, str) else path
    bf16 = path.dtype == "bf16"
    policy.to_inference_dtype(torch.bfloat16 if bf16 else torch.float32, channels_last=bf16)
    # Measured faster only in bf16 (oneDNN's fp32 convolution is as fast as the matmul).
    policy.use_matmul_convs(bf16 and policy.config.backbone == "unet")
    policy.enable_jit(path.mode == "jit")
    policy.enable_compile(path.mode in ("compile", "autotune"), autotune=path.mode == "autotune")
    return policy


def candidate_paths(policy: ActionChunkPolicy) -> tuple[list[InferencePath], dict[str, str]]:
    """The paths worth trying on this machine, and why the others are not."""
    skipped = {}
    dtypes = ["fp32"]
    on_cpu = policy.device.type == "cpu"
    if not on_cpu or cpu_has_native_bf16():
        dtypes.append("bf16")
    else:
        skipped["bf16"] = "no native bf16 on this CPU (avx512_bf16/amx_bf16): emulated, slower"
    paths = [InferencePath(d, "jit") for d in dtypes]
    if on_cpu and compiler_missing():
        skipped["compile"] = compiler_missing()
    else:  # compiled float32 measured no faster than traced; autotune only when named
        paths.append(InferencePath(dtypes[-1], "compile"))
    return paths, skipped


def probe_observation(policy: ActionChunkPolicy, seed: int = 0) -> Observation:
    """An observation at the policy's shapes: state at the middle of its training range,
    images with structure (a gradient plus noise), so every input path is exercised."""
    cfg = policy.config
    t = cfg.n_obs_steps
    rng = np.random.default_rng(seed)
    state = np.zeros((t, NUM_SLOTS), np.float32)
    if cfg.state_slots:
        lo = policy.normalizer.state_min.cpu().numpy()
        hi = policy.normalizer.state_max.cpu().numpy()
        state[:, cfg.state_slots] = (lo + hi) / 2
    mask = np.zeros(NUM_SLOTS, bool)
    mask[cfg.state_slots] = True
    images = {}
    if cfg.camera_names:
        h, w = cfg.image_size
        ramp = np.linspace(0, 200, w, dtype=np.float32)[None, :, None]
        for cam in cfg.camera_names:
            frame = ramp + rng.uniform(0, 55, (t, h, w, 3))
            images[cam] = frame.astype(np.uint8)
    env = None
    if cfg.env_state_dim:
        lo = policy.normalizer.env_state_min.cpu().numpy()
        hi = policy.normalizer.env_state_max.cpu().numpy()
        env = np.tile((lo + hi) / 2, (t, 1)).astype(np.float32)
    return Observation(images=images, state=state, state_mask=mask, env_state=env,
                       control_frequency=cfg.control_frequency)


def normalized_error(policy: ActionChunkPolicy, chunk: np.ndarray, ref: np.ndarray) -> float:
    """max |chunk - ref| in normalized action units (the training range maps to [-1, 1])."""
    lo = policy.normalizer.action_min.cpu().numpy()
    hi = policy.normalizer.action_max.cpu().numpy()
    span = np.maximum(hi - lo, 1e-6)
    return float(np.max(np.abs(chunk - ref) * 2 / span))


def step_relative_error(policy: ActionChunkPolicy, ref: ActionChunkPolicy, obs: Observation,
                        t_fraction: float = 0.5, seed: int = 1) -> float:  # fmt: skip
    """|step - step_ref| / |step_ref| of one denoising step of ``policy`` against ``ref`` (float32
    eager) at the same noisy chunk and time (``t_fraction`` of the training schedule). A
    random-weight model's whole chunk diverges between dtypes through the sampler; one step
    does not, so this is the agreement check for models without trained weights."""
    cfg = ref.config
    x = torch.randn(1, cfg.horizon, cfg.action_dim, generator=torch.Generator().manual_seed(seed))
    t = (torch.full((1,), round(t_fraction * cfg.num_train_timesteps)) if cfg.head == "ddpm"
         else torch.full((1,), float(t_fraction)))
    batch = ref.validate_observation(obs)
    outs = []
    for pol in (ref, policy):
        with torch.no_grad():
            cond = pol._prepare_batch(batch)
            ctx = pol.backbone.prepare_condition(cond)
            dtype = cond["global"].dtype
            outs.append(pol._step_fn(ctx, x.to(dtype), t)(x.to(dtype), t).float())
    return float((outs[1] - outs[0]).norm() / outs[0].norm().clamp_min(1e-12))


@dataclass
class PathReport:
    chosen: str
    rows: list[dict] = field(default_factory=list)  # {path, p50_ms, error, tolerance, ok, ...}
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = []
        for r in self.rows:
            if "p50_ms" in r:
                parts.append(f"{r['path']} {r['p50_ms']:.1f} ms (err {r['error']:.2g}"
                             f"{'' if r['ok'] else ' > ' + format(r['tolerance'], 'g')})")
            else:
                parts.append(f"{r['path']}: {r['skipped']}")
        parts += [f"{k}: {v}" for k, v in self.skipped.items()]
        return f"inference path {self.chosen}; " + "; ".join(parts)


def _time_chunks(policy, obs, noise, repeats: int) -> tuple[float, np.ndarray, float]:
    t0 = time.perf_counter()
    chunk = policy.predict_chunk(obs, noise=noise)  # traces / compiles
    first = time.perf_counter() - t0
    policy.predict_chunk(obs, noise=noise)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        policy.predict_chunk(obs, noise=noise)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, chunk, first


def select_inference_path(policy: ActionChunkPolicy, paths: list[str] | None = None,
                          repeats: int = 3,
                          compile_min_chunk_ms: float = COMPILE_MIN_CHUNK_MS,
                          ) -> tuple[ActionChunkPolicy, PathReport]:  # fmt: skip
    """Time every candidate path on ``policy`` (float32, eval) and return the fastest correct
    one (a copy; ``policy`` is not changed) with the report. ``paths`` limits the candidates;
    compiled paths are tried only where the fastest uncompiled one needs at least
    ``compile_min_chunk_ms``, unless named in ``paths``."""
    policy.eval()
    policy._traced.clear()  # traced and compiled modules do not deep-copy
    policy._compiled.clear()
    obs = probe_observation(policy)
    noise = np.random.default_rng(0).standard_normal(
        (policy.config.horizon, policy.config.action_dim)).astype(np.float32)
    base = copy.deepcopy(policy)
    apply_path(base, "fp32")
    base_ms, ref, _ = _time_chunks(base, obs, noise, repeats)
    report = PathReport("fp32", [{"path": "fp32", "p50_ms": round(base_ms, 2), "error": 0.0,
                                  "tolerance": TOLERANCE["fp32"], "ok": True}])
    candidates, report.skipped = candidate_paths(policy)
    if paths is not None:
        wanted = [InferencePath.parse(p) for p in paths]
        candidates = [c for c in wanted if c.name != "fp32"]
    best, best_ms = base, base_ms
    for path in candidates:
        if path.mode in ("compile", "autotune") and paths is None \
                and best_ms < compile_min_chunk_ms:
            report.rows.append({"path": path.name, "skipped": (
                f"chunks already take {best_ms:.0f} ms < {compile_min_chunk_ms:g} ms; "
                "compiling is not worth its start-up time")})
            continue
        trial = apply_path(copy.deepcopy(policy), path)
        try:
            ms, chunk, first = _time_chunks(trial, obs, noise, repeats)
        except Exception as exc:  # a path this torch/CPU cannot run is skipped, not fatal
            report.rows.append({"path": path.name, "skipped": f"failed: {exc}"[:300]})
            continue
        err = normalized_error(policy, chunk, ref)
        ok = bool(np.isfinite(chunk).all() and err <= TOLERANCE[path.dtype])
        report.rows.append({"path": path.name, "p50_ms": round(ms, 2), "error": err,
                            "tolerance": TOLERANCE[path.dtype], "ok": ok,
                            "first_chunk_s": round(first, 2)})
        if ok and ms < best_ms:
            best, best_ms, report.chosen = trial, ms, path.name
    return best, report
