"""Proof that the generative heads learn: a bimodal dataset, where the same observation is
followed by one of two trajectories with equal probability. DDPM and flow matching must produce
both modes; an MSE-regression baseline of the same size must land between them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from action_diffusion_policy.config import PolicyConfig
from action_diffusion_policy.data.dataset import ChunkDataset
from action_diffusion_policy.data.synthetic import (
    BIMODAL_ACTION_SLOTS,
    BIMODAL_STATE_SLOTS,
    bimodal_actions,
    write_bimodal_dataset,
)
from action_diffusion_policy.policy import ActionChunkPolicy

torch.set_num_threads(1)  # the CI box has 2 cores shared by parallel jobs

EPISODE_LENGTH = 32
HORIZON = 8
STEPS = 250
SAMPLES = 200
NEAR = 0.15  # RMS distance (data units) that counts as "on" a mode; the modes are >= 1 apart
TICK = 8  # evaluate at this tick of an episode


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    path = write_bimodal_dataset(tmp_path_factory.mktemp("bimodal") / "ds", num_episodes=32,
                                 episode_length=EPISODE_LENGTH)
    ds = ChunkDataset(path, n_obs_steps=1, horizon=HORIZON)
    items = [ds[i] for i in range(len(ds))]
    data = {k: torch.stack([it[k] for it in items]) for k in ("state", "action")}
    return data, ds.stats


def train(head: str, data: dict, stats: dict) -> ActionChunkPolicy:
    torch.manual_seed(0)
    sampler = {"ddpm": "ddim", "flow": "euler", "regression": "none"}[head]
    # DDPM with sample prediction (the RDT recipe) converges in fewer steps than epsilon here.
    cfg = PolicyConfig(backbone="dit", size="tiny", head=head, sampler=sampler,
                       prediction_type="sample",
                       horizon=HORIZON, n_obs_steps=1, state_slots=BIMODAL_STATE_SLOTS,
                       action_slots=BIMODAL_ACTION_SLOTS, num_train_timesteps=100,
                       num_inference_steps=10)
    policy = ActionChunkPolicy(cfg, stats)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3, weight_decay=1e-6)
    gen = torch.Generator().manual_seed(0)
    n = len(data["state"])
    for _ in range(STEPS):
        idx = torch.randint(0, n, (64,), generator=gen)
        loss = policy.compute_loss({k: v[idx] for k, v in data.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy.eval()


def sample_chunks(policy: ActionChunkPolicy) -> np.ndarray:
    state = torch.zeros(SAMPLES, 1, 128)
    state[:, 0, 0] = TICK / (EPISODE_LENGTH - 1)
    torch.manual_seed(1)
    x = policy.sample_normalized({"state": state})
    return policy.normalizer.unnormalize("action", x).numpy()


def mode_distances(chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    phase = np.arange(TICK, TICK + HORIZON) / (EPISODE_LENGTH - 1)
    up, down = bimodal_actions(phase, 1), bimodal_actions(phase, -1)
    rms = lambda ref: np.sqrt(((chunks - ref) ** 2).mean((1, 2)))  # noqa: E731
    return rms(up), rms(down)


@pytest.mark.parametrize("head", ["ddpm", "flow"])
def test_generative_heads_produce_both_modes(head, batches):
    d_up, d_down = mode_distances(sample_chunks(train(head, *batches)))
    assert (d_up < NEAR).mean() >= 0.25, f"mode +1 in {(d_up < NEAR).mean():.0%} of samples"
    assert (d_down < NEAR).mean() >= 0.25, f"mode -1 in {(d_down < NEAR).mean():.0%} of samples"
    assert (np.minimum(d_up, d_down) < NEAR).mean() >= 0.9


def test_regression_baseline_lands_between_modes(batches):
    chunks = sample_chunks(train("regression", *batches))
    d_up, d_down = mode_distances(chunks)
    assert (np.minimum(d_up, d_down) < NEAR).mean() == 0.0
    assert np.abs(chunks[:, :, 0]).mean() < 0.35  # the mean of +-(0.5..1) is ~0
