"""Pin what ships: a checkpoint's chunk for a fixed observation and fixed noise.

Any change to the models, the heads, the normalizer or the preprocessing that moves a shipped
policy's actions changes these numbers, and the golden test fails (in the style of LeRobot's
backward-compatibility test). The observation is built from the checkpoint's own spec and
normalization ranges, so it is valid for every checkpoint, with or without cameras.

    python -m action_diffusion_policy.testing.golden CHECKPOINT_DIR [--write]

``--write`` stores ``golden.json`` in the checkpoint directory (do it only when a change of the
actions is intended, and say so in the commit); without it, compares and prints the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from action_diffusion_policy.checkpoint import load_policy
from action_diffusion_policy.config import NUM_SLOTS
from action_diffusion_policy.types import Observation

GOLDEN_FILE = "golden.json"
# Data units (rad, m, gripper 0..1). fp32 on CPUs with other vector units differs far below.
TOLERANCE = 1e-4


def golden_inputs(policy) -> tuple[Observation, np.ndarray]:
    """The fixed observation (a quarter into every normalization range, fixed images) and noise."""
    spec = policy.spec
    rng = np.random.default_rng(20261202)
    state = np.zeros((spec.n_obs_steps, NUM_SLOTS), np.float32)
    mask = np.zeros(NUM_SLOTS, bool)
    mask[spec.state_slots] = True
    norm = policy.normalizer
    if spec.state_slots:
        lo, hi = norm.state_min.cpu().numpy(), norm.state_max.cpu().numpy()
        for t in range(spec.n_obs_steps):
            state[t, spec.state_slots] = lo + (0.25 + 0.05 * t) * (hi - lo)
    images = {}
    if spec.camera_names:
        h, w = spec.image_size
        for cam in spec.camera_names:
            images[cam] = rng.integers(0, 256, (spec.n_obs_steps, h, w, 3), dtype=np.uint8)
    env = None
    if spec.env_state_dim:
        lo, hi = norm.env_state_min.cpu().numpy(), norm.env_state_max.cpu().numpy()
        env = np.tile(lo + 0.4 * (hi - lo), (spec.n_obs_steps, 1)).astype(np.float32)
    obs = Observation(images=images, state=state, state_mask=mask, env_state=env,
                      control_frequency=float(spec.control_frequency))
    noise = rng.standard_normal((spec.horizon, len(spec.action_slots))).astype(np.float32)
    return obs, noise


def golden_chunk(checkpoint: str | os.PathLike) -> tuple[np.ndarray, str]:
    torch.manual_seed(0)
    policy = load_policy(checkpoint)
    policy.enable_jit(False)
    obs, noise = golden_inputs(policy)
    return policy.predict_chunk(obs, noise), policy.spec.checkpoint_id


def compare(checkpoint: str | os.PathLike) -> dict:
    """Max abs difference from the stored chunk (raises FileNotFoundError without one)."""
    path = Path(checkpoint) / GOLDEN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run python -m "
                                f"action_diffusion_policy.testing.golden {checkpoint} --write")
    stored = json.loads(path.read_text())
    chunk, ckpt_id = golden_chunk(checkpoint)
    want = np.asarray(stored["chunk"], np.float32)
    if want.shape != chunk.shape:
        raise ValueError(f"{path}: stored chunk {want.shape}, the checkpoint gives {chunk.shape}")
    return {"checkpoint_id": ckpt_id, "stored_checkpoint_id": stored["checkpoint_id"],
            "max_abs_diff": float(np.abs(chunk - want).max()), "tolerance": TOLERANCE}


def write(checkpoint: str | os.PathLike) -> Path:
    chunk, ckpt_id = golden_chunk(checkpoint)
    path = Path(checkpoint) / GOLDEN_FILE
    body = {"checkpoint_id": ckpt_id, "tolerance": TOLERANCE,
            "note": "testing/golden.py: fixed observation and noise -> this chunk (data units)",
            "chunk": [[round(float(v), 7) for v in row] for row in chunk]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".golden-")
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=1)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--write", action="store_true", help="store golden.json (intended change)")
    a = ap.parse_args(argv)
    if a.write:
        print(f"wrote {write(a.checkpoint)}")
        return 0
    report = compare(a.checkpoint)
    print(json.dumps(report))
    return 0 if report["max_abs_diff"] <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
