"""Real-time chunking (Black et al. 2025): the soft mask, guided inpainting in both heads,
the policy API's prefix/delay, and the executor's switch on arrival."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from action_diffusion_policy.checkpoint import load_policy
from action_diffusion_policy.config import PolicyConfig
from action_diffusion_policy.heads import rtc_weights
from action_diffusion_policy.policy import ActionChunkPolicy
from action_diffusion_policy.runtime.ensembler import ChunkEnsembler, EnsemblerConfig
from action_diffusion_policy.types import Observation

torch.set_num_threads(1)
SLOTS = [0, 1, 2, 10]


def test_soft_mask_follows_the_paper():
    w = rtc_weights(16, delay=4, execution_horizon=4, prefix_len=16).numpy()
    assert (w[:4] == 1).all() and (w[12:] == 0).all()
    assert (np.diff(w[4:13]) < 0).all() and 0 < w[4] < 1  # exponential decay in between
    assert (rtc_weights(16, 4, 4, prefix_len=6).numpy()[6:] == 0).all()  # past the prefix


def tiny_policy(head) -> ActionChunkPolicy:
    h, pred, sampler = head
    cfg = PolicyConfig(backbone="dit", size="tiny", head=h, prediction_type=pred, sampler=sampler,
                       horizon=16, n_obs_steps=1, state_slots=SLOTS, action_slots=SLOTS,
                       env_state_dim=0, num_train_timesteps=50, num_inference_steps=8,
                       embodiments=["aloha_sim"])  # fmt: skip
    stats = {"state": {"min": [-1.0] * 128, "max": [1.0] * 128},
             "action": {"min": [-1.0] * 128, "max": [1.0] * 128}}  # fmt: skip
    policy = ActionChunkPolicy(cfg, stats)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return policy.eval()


def obs_for(policy, seed=0) -> Observation:
    rng = np.random.default_rng(seed)
    mask = np.zeros(128, bool)
    mask[SLOTS] = True
    return Observation({}, rng.normal(size=(1, 128)).astype(np.float32) * 0.3, mask)


@pytest.mark.parametrize("head", [("flow", "epsilon", "euler"), ("ddpm", "epsilon", "ddim"),
                                  ("ddpm", "sample", "dpmsolver++")])  # fmt: skip
def test_frozen_prefix_is_reproduced_in_both_heads(head):
    policy = tiny_policy(head)
    obs = obs_for(policy)
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(16, 4))
    prefix = np.linspace(-0.5, 0.5, 16 * 4).reshape(16, 4).astype(np.float32)
    plain = policy.predict_chunk(obs, noise=noise)
    assert np.abs(plain[:5] - prefix[:5]).max() > 0.05  # not what it would sample anyway
    for guidance in ("vjp", "identity"):
        out = policy.predict_chunk(obs, noise=noise, prefix=prefix, delay=5, guidance=guidance)
        np.testing.assert_allclose(out[:5], prefix[:5], atol=1e-4)
        # The soft-held rows move toward the prefix. Not checked for DPM-Solver++: its
        # multistep update reuses the previous steps' unguided outputs, and there the pull on
        # these rows was not measurable (the frozen rows are pinned all the same).
        if head[2] != "dpmsolver++":
            soft = slice(5, 11)
            assert (np.abs(out[soft] - prefix[soft]).mean()
                    < np.abs(plain[soft] - prefix[soft]).mean())  # fmt: skip
    with pytest.raises(ValueError, match="guidance: expected one of"):
        policy.predict_chunk(obs, prefix=prefix, delay=5, guidance="exact")


def test_real_policy_continues_its_own_chunk_without_a_jump():
    from action_diffusion_bringup import description as d

    policy = load_policy(d.checkpoints_dir() / "transfer_cube")
    spec = policy.spec
    rng = np.random.default_rng(0)
    mask = np.zeros(128, bool)
    mask[spec.state_slots] = True
    state = np.zeros((spec.n_obs_steps, 128), np.float32)
    obs = Observation({}, state, mask, env_state=np.zeros((spec.n_obs_steps, spec.env_state_dim),
                      np.float32) if spec.env_state_dim else None)  # fmt: skip
    old = policy.predict_chunk(obs, noise=rng.normal(size=(spec.horizon, spec.action_dim)))
    delay, shift = 4, 4  # the next inference starts 4 steps later and takes 4 steps
    new = policy.predict_chunk(obs, noise=rng.normal(size=(spec.horizon, spec.action_dim)),
                               prefix=old[shift:], delay=delay)  # fmt: skip
    np.testing.assert_allclose(new[:delay], old[shift:shift + delay], atol=1e-5)
    typical = np.abs(np.diff(old, axis=0)).max()
    assert np.abs(new[delay] - new[delay - 1]).max() <= 3 * typical + 1e-6


def test_bad_prefix_and_a_delay_past_the_horizon():
    policy = tiny_policy(("flow", "epsilon", "euler"))
    obs = obs_for(policy)
    with pytest.raises(ValueError, match=r"prefix: expected shape \(P, 4\)"):
        policy.predict_chunk(obs, prefix=np.zeros((5, 3)), delay=2)
    with pytest.raises(ValueError, match="prefix: expected finite"):
        policy.predict_chunk(obs, prefix=np.full((5, 4), np.nan), delay=2)
    with pytest.raises(ValueError, match="delay: expected an integer"):
        policy.predict_chunk(obs, prefix=np.zeros((5, 4)), delay=-1)
    noise = np.random.default_rng(0).normal(size=(16, 4))
    assert policy.rtc_fallback(16)
    np.testing.assert_allclose(policy.predict_chunk(obs, noise=noise, prefix=np.ones((16, 4)),
                                                    delay=16),
                               policy.predict_chunk(obs, noise=noise), atol=1e-6)  # fmt: skip


def test_rtc_executes_the_newest_chunk_from_its_arrival():
    ens = ChunkEnsembler([0], EnsemblerConfig(strategy="rtc"))
    ens.add_chunk(0.0, 0.02, [0], np.arange(32.0)[:, None])
    assert ens.action_at(0.1)[0][0] == 5.0
    ens.add_chunk(0.06, 0.02, [0], 100 + np.arange(32.0)[:, None])  # arrives at t = 0.1
    assert ens.action_at(0.1)[0][0] == 102.0  # its row for now, at once
    np.testing.assert_allclose(ens.preview([0.12, 0.14])[:, 0], [103.0, 104.0])
