"""Training windows over a dataset directory (see ``format.py``).

For a window ending at tick ``t`` of an episode: observations are ticks ``t-T+1 .. t`` (the first
frame repeated before the episode start), actions are ticks ``t .. t+H-1`` (the last action
repeated after the episode end, flagged in ``action_is_pad``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from action_diffusion_policy.data.format import DatasetError, DatasetReader


class ChunkDataset(Dataset):
    """Items: ``images`` (N, T, 3, H, W) uint8 (only with cameras), ``state`` (T, 128),
    ``state_mask`` (128,) bool, ``env_state`` (T, D) (only when the dataset has it),
    ``action`` (H, 128), ``action_is_pad`` (H,) bool, ``episode`` int."""

    def __init__(self, source: str | os.PathLike | DatasetReader, n_obs_steps: int,
                 horizon: int, camera_names: list[str] | None = None,
                 episodes: list[int] | None = None):
        self.reader = source if isinstance(source, DatasetReader) else DatasetReader(source)
        meta = self.reader.meta
        self.n_obs_steps, self.horizon = int(n_obs_steps), int(horizon)
        if self.n_obs_steps < 1 or self.horizon < 1:
            raise ValueError(f"n_obs_steps={n_obs_steps} and horizon={horizon} must be >= 1")
        self.camera_names = list(meta.camera_names if camera_names is None else camera_names)
        missing = sorted(set(self.camera_names) - set(meta.camera_names))
        if missing:
            raise DatasetError(f"{self.reader.path}: cameras {missing} requested, the dataset "
                               f"has {meta.camera_names}")
        self.episodes = list(range(self.reader.num_episodes) if episodes is None else episodes)
        index = []  # (episode, tick within episode)
        for e in self.episodes:
            index.extend((e, t) for t in range(meta.episodes[e].length))
        self.index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
        self.state_mask = torch.as_tensor(np.asarray(meta.state_mask, dtype=bool))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, t = (int(v) for v in self.index[i])
        info = self.reader.meta.episodes[e]
        start, length = info.start, info.length
        obs_idx = start + np.clip(np.arange(t - self.n_obs_steps + 1, t + 1), 0, length - 1)
        act_rel = np.arange(t, t + self.horizon)
        act_idx = start + np.clip(act_rel, 0, length - 1)
        item = {
            "state": torch.from_numpy(np.array(self.reader.state[obs_idx], dtype=np.float32)),
            "state_mask": self.state_mask,
            "action": torch.from_numpy(np.array(self.reader.action[act_idx], dtype=np.float32)),
            "action_is_pad": torch.from_numpy(act_rel >= length),
            "episode": e,
        }
        if self.reader.env_state is not None:
            item["env_state"] = torch.from_numpy(
                np.array(self.reader.env_state[obs_idx], dtype=np.float32))
        if self.camera_names:
            frames = np.stack([self.reader.images[c][obs_idx] for c in self.camera_names])
            item["images"] = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).contiguous()
        return item

    @property
    def stats(self) -> dict:
        return self.reader.meta.stats


def split_episodes(num_episodes: int, val_fraction: float, seed: int = 0
                   ) -> tuple[list[int], list[int]]:
    """Random episode split; at least one training episode, validation may be empty."""
    order = np.random.default_rng(seed).permutation(num_episodes).tolist()
    n_val = min(num_episodes - 1, round(num_episodes * val_fraction))
    return sorted(order[n_val:]), sorted(order[:n_val])
