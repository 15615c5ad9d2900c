"""Synthetic datasets in the on-disk format, for tests and demos.

- ``bimodal``: low-dim. The state holds only the episode phase p in [0, 1]; the action follows
  one of two trajectories chosen per episode with equal probability:
  ``a0 = m (0.5 + 0.5 p)``, ``a1 = p`` with ``m = +1`` or ``-1``. The same observation is thus
  followed by one of two distinct chunks; a regression policy averages them to ``a0 ~ 0``.
- ``reach``: a 2-D point "arm" (state slots 0-1) moves toward a target (``env_state``, 2 dims);
  with ``cameras`` the target is also drawn as a bright square in each camera image.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from action_diffusion_policy.data.format import NUM_SLOTS, DatasetMeta, DatasetWriter

BIMODAL_ACTION_SLOTS = [0, 1]
BIMODAL_STATE_SLOTS = [0]


def bimodal_actions(phase: np.ndarray, mode: int) -> np.ndarray:
    """(n,) phases -> (n, 2) actions of mode +1 or -1 (the two ground-truth trajectories)."""
    return np.stack([mode * (0.5 + 0.5 * phase), phase], -1).astype(np.float32)


def write_bimodal_dataset(path: str | os.PathLike, num_episodes: int = 64,
                          episode_length: int = 32, seed: int = 0,
                          force: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    mask = np.zeros(NUM_SLOTS, bool)
    mask[BIMODAL_STATE_SLOTS] = True
    meta = DatasetMeta(embodiment="synthetic_bimodal", control_frequency=10.0, camera_names=[],
                       image_size=None, state_mask=mask.tolist(),
                       action_slots=BIMODAL_ACTION_SLOTS)
    modes = np.where(np.arange(num_episodes) % 2 == 0, 1, -1)
    rng.shuffle(modes)
    with DatasetWriter(path, meta, force=force) as w:
        for e in range(num_episodes):
            phase = np.arange(episode_length) / (episode_length - 1)
            state = np.zeros((episode_length, NUM_SLOTS), np.float32)
            state[:, 0] = phase
            action = np.zeros((episode_length, NUM_SLOTS), np.float32)
            action[:, BIMODAL_ACTION_SLOTS] = bimodal_actions(phase, int(modes[e]))
            w.add_episode(state, action, task="bimodal", source=f"synthetic:{e}",
                          success=True)
    return Path(path)


def write_reach_dataset(path: str | os.PathLike, num_episodes: int = 32,
                        episode_length: int = 40, cameras: tuple[str, ...] = (),
                        image_size: tuple[int, int] = (48, 64), seed: int = 0,
                        force: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    mask = np.zeros(NUM_SLOTS, bool)
    mask[[0, 1]] = True
    meta = DatasetMeta(embodiment="synthetic_reach", control_frequency=10.0,
                       camera_names=list(cameras), image_size=image_size if cameras else None,
                       state_mask=mask.tolist(), action_slots=[0, 1], env_state_dim=2)
    h, w = image_size
    with DatasetWriter(path, meta, force=force) as wr:
        for e in range(num_episodes):
            target = rng.uniform(-1, 1, 2).astype(np.float32)
            pos = rng.uniform(-1, 1, 2).astype(np.float32)
            states, actions = [], []
            for _ in range(episode_length):
                nxt = pos + 0.15 * (target - pos)
                states.append(pos.copy())
                actions.append(nxt.copy())
                pos = nxt
            state = np.zeros((episode_length, NUM_SLOTS), np.float32)
            state[:, :2] = states
            action = np.zeros((episode_length, NUM_SLOTS), np.float32)
            action[:, :2] = actions
            env = np.repeat(target[None], episode_length, 0)
            images = {}
            for cam in cameras:
                frames = np.zeros((episode_length, h, w, 3), np.uint8)
                cy = int((target[1] + 1) / 2 * (h - 6))
                cx = int((target[0] + 1) / 2 * (w - 6))
                frames[:, cy: cy + 6, cx: cx + 6] = 255
                for t, p in enumerate(states):  # the arm as a dim square
                    py = int((p[1] + 1) / 2 * (h - 4))
                    px = int((p[0] + 1) / 2 * (w - 4))
                    frames[t, py: py + 4, px: px + 4, 1] = 128
                images[cam] = frames
            wr.add_episode(state, action, images=images, env_state=env, task="reach",
                           source=f"synthetic:{e}", success=True)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write a synthetic dataset in the on-disk format.")
    p.add_argument("kind", choices=["bimodal", "reach"])
    p.add_argument("output", help="dataset directory to create")
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--cameras", nargs="*", default=[], help="reach only: camera names")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    if a.kind == "bimodal":
        out = write_bimodal_dataset(a.output, a.episodes, seed=a.seed, force=a.force)
    else:
        out = write_reach_dataset(a.output, a.episodes, cameras=tuple(a.cameras), seed=a.seed,
                                  force=a.force)
    print(out)


if __name__ == "__main__":
    main()
