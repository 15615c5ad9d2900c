"""Offline evaluation: run a checkpoint over held-out demonstrations, step by step, and compare
its predicted chunks with the recorded actions.

    evaluate_offline --checkpoint CKPT (--bag BAG [BAG ...] | --dataset DS) --out DIR
        [--stride N] [--max-steps N] [--seed S] [--device cpu] [--action-source command|next_state]
        [--max-staleness S] [--no-plots]

Bags are first resampled onto the control clock exactly as ``build_dataset`` does (into a
temporary dataset at the checkpoint's image size). Then, at every ``stride``-th tick ``t`` of
every episode, the policy sees the last ``n_obs_steps`` frames (the first frame repeated at the
start of an episode) and predicts an ``(H, k)`` chunk; action ``i`` of the chunk is compared with
the recorded action at tick ``t + i`` (steps past the episode's end are left out). The noise is
drawn from ``--seed`` so a run is reproducible.

Writes ``DIR/report.json`` (per-slot MAE/RMSE over the whole horizon, MAE per horizon step,
overall figures, inference latency) and PNG plots: ``per_slot_error.png``,
``error_vs_horizon.png`` and ``trajectories.png`` (first predicted action vs recorded, first
episode).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from action_diffusion_policy.data.format import DatasetError, DatasetReader


def _slot_name(slot: int) -> str:
    try:
        from unified_action_space.layout import SLOT_NAMES

        return SLOT_NAMES[slot]
    except Exception:
        return f"slot_{slot}"


def _resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from action_diffusion_policy.data.images import resize

    if frames.shape[1:3] == tuple(size):
        return frames
    return np.stack([resize(f, size) for f in frames])


def observation_at(ds: DatasetReader, start: int, t: int, spec):
    """Observation for tick ``t`` (absolute index) of the episode starting at ``start``."""
    from action_diffusion_policy.types import Observation

    n = spec.n_obs_steps
    idx = np.clip(np.arange(t - n + 1, t + 1), start, None)
    images = {c: _resize_frames(np.asarray(ds.images[c][idx]), spec.image_size)
              for c in spec.camera_names}
    env = None
    if spec.env_state_dim:
        if ds.env_state is None or ds.env_state.shape[1] != spec.env_state_dim:
            got = None if ds.env_state is None else ds.env_state.shape[1]
            raise DatasetError(
                f"{ds.path}: the checkpoint needs env_state of width {spec.env_state_dim}, "
                f"the data has {got}"
            )
        env = np.asarray(ds.env_state[idx], np.float32)
    return Observation(
        images=images,
        state=np.asarray(ds.state[idx], np.float32),
        state_mask=np.asarray(ds.meta.state_mask, bool),
        env_state=env,
        control_frequency=float(ds.meta.control_frequency),
    )


def evaluate(policy, ds: DatasetReader, stride: int = 1, max_steps: int | None = None,
             seed: int = 0, progress: bool = True) -> dict:
    """Predict at every ``stride``-th tick; return errors and the raw arrays for plotting."""
    spec = policy.spec
    missing = [c for c in spec.camera_names if c not in ds.images]
    if missing:
        raise DatasetError(f"{ds.path}: the checkpoint needs cameras {missing}, "
                           f"the data has {sorted(ds.images)}")
    slots = np.asarray(spec.action_slots)
    h, k = spec.horizon, len(slots)
    rng = np.random.default_rng(seed)
    steps = [(e.start, e.start + e.length, t) for e in ds.meta.episodes
             for t in range(e.start, e.start + e.length, stride)]
    if max_steps:
        steps = steps[:max_steps]
    if not steps:
        raise DatasetError(f"{ds.path}: no frames to evaluate on")
    err = np.full((len(steps), h, k), np.nan)
    first_pred = np.zeros((len(steps), k))
    first_true = np.zeros((len(steps), k))
    episode_of = np.zeros(len(steps), int)
    latencies = []
    starts = [e.start for e in ds.meta.episodes]
    policy.reset()
    prev_start = None
    for i, (start, end, t) in enumerate(tqdm(steps, desc="evaluate", disable=not progress)):
        if start != prev_start:
            policy.reset()
            prev_start = start
        obs = observation_at(ds, start, t, spec)
        noise = rng.standard_normal((h, k)).astype(np.float32)
        t0 = time.perf_counter()
        chunk = policy.predict_chunk(obs, noise=noise)
        latencies.append(time.perf_counter() - t0)
        n_valid = min(h, end - t)
        truth = np.asarray(ds.action[t : t + n_valid])[:, slots]
        err[i, :n_valid] = chunk[:n_valid] - truth
        first_pred[i], first_true[i] = chunk[0], truth[0]
        episode_of[i] = starts.index(start)
    abs_err = np.abs(err)
    per_slot = {}
    for j, s in enumerate(slots):
        e = err[:, :, j][~np.isnan(err[:, :, j])]
        per_slot[_slot_name(int(s))] = {
            "slot": int(s),
            "mae": float(np.mean(np.abs(e))),
            "rmse": float(np.sqrt(np.mean(e**2))),
            "first_step_mae": float(np.nanmean(abs_err[:, 0, j])),
        }
    lat = np.array(latencies) * 1000
    return {
        "report": {
            "checkpoint_id": spec.checkpoint_id,
            "data": str(ds.path),
            "episodes": len(set(episode_of.tolist())),
            "steps": len(steps),
            "stride": stride,
            "horizon": h,
            "seed": seed,
            "mae": float(np.nanmean(abs_err)),
            "rmse": float(np.sqrt(np.nanmean(err**2))),
            "mae_per_horizon_step": np.nanmean(abs_err, axis=(0, 2)).tolist(),
            "per_slot": per_slot,
            "latency_ms": {"p50": float(np.percentile(lat, 50)),
                           "p95": float(np.percentile(lat, 95)), "mean": float(lat.mean())},
        },
        "first_pred": first_pred,
        "first_true": first_true,
        "episode_of": episode_of,
        "dt": stride / float(ds.meta.control_frequency),
    }


def write_plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = result["report"]
    names = list(rep["per_slot"])
    files = []
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [rep["per_slot"][n]["mae"] for n in names], 0.4, label="MAE")
    ax.bar(x + 0.2, [rep["per_slot"][n]["rmse"] for n in names], 0.4, label="RMSE")
    ax.set_xticks(x, names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("error (slot units)")
    ax.set_title(f"per-slot error over the {rep['horizon']}-step horizon")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "per_slot_error.png", dpi=100)
    plt.close(fig)
    files.append("per_slot_error.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(rep["horizon"]), rep["mae_per_horizon_step"], marker=".")
    ax.set_xlabel("chunk step i (action for t + i)")
    ax.set_ylabel("MAE (all slots)")
    ax.set_title("error vs horizon")
    fig.tight_layout()
    fig.savefig(out / "error_vs_horizon.png", dpi=100)
    plt.close(fig)
    files.append("error_vs_horizon.png")

    sel = result["episode_of"] == result["episode_of"][0]
    n = len(names)
    cols = 4
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
    tt = np.arange(sel.sum()) * result["dt"]
    for j, name in enumerate(names):
        ax = axes[j // cols][j % cols]
        ax.plot(tt, result["first_true"][sel, j], label="recorded", lw=1)
        ax.plot(tt, result["first_pred"][sel, j], label="predicted", lw=1)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=6)
    fig.suptitle("first action of each chunk vs recorded (episode 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "trajectories.png", dpi=100)
    plt.close(fig)
    files.append("trajectories.png")
    return files


def run(checkpoint, out, bags=None, dataset=None, stride=1, max_steps=None, seed=0,
        device="cpu", action_source="command", max_staleness=0.1, plots=True,
        progress=True) -> dict:
    from action_diffusion_policy.checkpoint import load_policy

    if (bags is None) == (dataset is None):
        raise ValueError("give exactly one of --bag or --dataset")
    if stride < 1:
        raise ValueError(f"--stride {stride}: must be >= 1")
    policy = load_policy(checkpoint, device=device)
    spec = policy.spec
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmpdir = None
    try:
        if bags is not None:
            from action_diffusion_policy.data.build_dataset import build_dataset

            tmpdir = Path(tempfile.mkdtemp(prefix="evaluate_offline_"))
            build_dataset(
                bags=list(bags), output=tmpdir / "ds",
                embodiment=spec.embodiments[0] if spec.embodiments else None,
                action_source=action_source,
                image_size=tuple(spec.image_size) if spec.image_size else (120, 160),
                cameras=list(spec.camera_names), max_staleness=max_staleness,
                frequency=spec.control_frequency, env_state=bool(spec.env_state_dim),
                progress=progress,
            )
            dataset = tmpdir / "ds"
        ds = DatasetReader(dataset)
        result = evaluate(policy, ds, stride, max_steps, seed, progress)
        report = result["report"]
        report["checkpoint"] = str(checkpoint)
        report["input"] = [str(b) for b in bags] if bags is not None else str(dataset)
        if plots:
            report["plots"] = write_plots(result, out)
        tmp = out / "report.json.tmp"
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, out / "report.json")
        return report
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="evaluate_offline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bag", nargs="+", help="held-out bag(s) or directories of bags")
    src.add_argument("--dataset", help="held-out dataset directory (build_dataset output)")
    ap.add_argument("--out", required=True, help="directory for report.json and the plots")
    ap.add_argument("--stride", type=int, default=1, help="predict every N-th tick")
    ap.add_argument("--max-steps", type=int, help="stop after N predictions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--action-source", default="command", choices=["command", "next_state"])
    ap.add_argument("--max-staleness", type=float, default=0.1)
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args(argv)
    try:
        report = run(a.checkpoint, a.out, a.bag, a.dataset, a.stride, a.max_steps, a.seed,
                     a.device, a.action_source, a.max_staleness, not a.no_plots)
    except (DatasetError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"evaluate_offline: error: {exc}", file=sys.stderr)
        return 2
    summary = {k: report[k] for k in ("mae", "rmse", "steps", "episodes", "latency_ms")}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
