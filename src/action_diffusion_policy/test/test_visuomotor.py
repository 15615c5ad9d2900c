"""Camera recipe pieces: the convnet encoder, per-image crops, state regularisers, several
noise draws per observation, the state-slot shorthand, bf16 detection and bf16 agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from action_diffusion_policy import hardware
from action_diffusion_policy.config import ConfigError, PolicyConfig
from action_diffusion_policy.models.encoders import ConvImageEncoder, SpatialSoftmax
from action_diffusion_policy.policy import ActionChunkPolicy
from action_diffusion_policy.training.train import policy_config_for_dataset
from action_diffusion_policy.types import Observation

torch.set_num_threads(1)

SLOTS = [0, 1, 2, 10]


def camera_config(**kw) -> PolicyConfig:
    base = dict(backbone="dit", size="tiny", head="flow", sampler="euler", horizon=8,
                n_obs_steps=1, camera_names=["cam_high"], image_size=(32, 40),
                state_slots=SLOTS, action_slots=SLOTS, vision_encoder="convnet",
                conv_channels=(16, 32), num_keypoints=8, image_feature_dim=16,
                num_inference_steps=3)
    base.update(kw)
    return PolicyConfig(**base)


def stats() -> dict:
    lo, hi = -np.ones(128), np.ones(128)
    return {"state": {"min": lo.tolist(), "max": hi.tolist()},
            "action": {"min": lo.tolist(), "max": hi.tolist()}}


def batch(n: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randint(0, 255, (n, 1, 1, 3, 32, 40), dtype=torch.uint8, generator=g),
            "state": torch.rand(n, 1, 128, generator=g) * 2 - 1,
            "action": torch.rand(n, 8, 128, generator=g) * 2 - 1}


@pytest.mark.parametrize(("field", "value"), [
    ("conv_channels", (16,)), ("conv_channels", (16, 20)), ("state_noise_std", -0.1),
    ("state_dropout", 1.0), ("noise_draws", 0), ("vision_encoder", "vgg"),
])
def test_config_rejects_bad_camera_recipe_fields(field, value):
    with pytest.raises(ConfigError, match=field):
        camera_config(**{field: value})


def test_config_round_trips_conv_channels_through_json():
    cfg = camera_config(conv_channels=(16, 32, 48))
    assert PolicyConfig.from_json(cfg.to_json()).conv_channels == (16, 32, 48)


def test_convnet_keeps_a_quarter_of_the_resolution():
    enc = ConvImageEncoder((48, 64), (16, 32, 32), num_keypoints=8, feature_dim=16)
    pooled, tokens = enc(torch.rand(2, 3, 48, 64))
    assert pooled.shape == (2, 16)
    assert tokens.shape == (2, 12 * 16, 32)  # (48/4) * (64/4) cells of 32 channels


def test_learned_temperature_sharpens_the_keypoint_distribution():
    pool = SpatialSoftmax(4, 2, learn_temperature=True)
    feat = torch.randn(1, 4, 6, 8)
    soft = pool.attention(feat).max()
    with torch.no_grad():
        pool.log_temperature.fill_(-3.0)  # temperature e^-3: sharper
    assert pool.attention(feat).max() > soft


def test_keypoint_follows_a_bright_spot():
    """A hand-made encoder whose keypoint must land on the one bright pixel block."""
    torch.manual_seed(0)
    pool = SpatialSoftmax(1, 1, learn_temperature=True)
    with torch.no_grad():
        pool.proj.weight.fill_(1.0)
        pool.proj.bias.zero_()
        pool.log_temperature.fill_(-2.0)
    feat = torch.zeros(1, 1, 9, 9)
    feat[0, 0, 1, 7] = 1.0  # row 1 of 9 -> y = -0.75; column 7 -> x = 0.75
    x, y = pool(feat)[0].tolist()
    assert x == pytest.approx(0.75, abs=0.05) and y == pytest.approx(-0.75, abs=0.05)


def test_training_crop_differs_per_image_and_inference_crop_is_centred():
    policy = ActionChunkPolicy(camera_config(crop_ratio=0.75), stats())
    x = torch.arange(32 * 40, dtype=torch.float32).reshape(1, 1, 32, 40).repeat(16, 3, 1, 1)
    policy.train()
    torch.manual_seed(0)
    crops = policy._crop(x)
    assert crops.shape == (16, 3, 24, 30)
    corners = {float(c[0, 0, 0]) for c in crops}
    assert len(corners) > 1, "every image got the same offset"
    policy.eval()
    centre = policy._crop(x)
    assert float(centre[0, 0, 0, 0]) == float(x[0, 0, 4, 5])


def test_state_regularisers_only_act_in_training():
    policy = ActionChunkPolicy(camera_config(state_noise_std=0.5, state_dropout=0.5), stats())
    state = torch.full((64, 1, 4), 0.3)
    policy.train()
    torch.manual_seed(0)
    out = policy._augment_state(state)
    dropped = (out == 0).all(-1).all(-1)
    assert 10 < int(dropped.sum()) < 54  # about half the samples lose their state
    assert not torch.allclose(out[~dropped], state[~dropped])  # the rest are noisy
    policy.eval()
    cond = policy._prepare_batch({"state": state.expand(64, 1, 4).clone(),
                                  "images": torch.zeros(64, 1, 1, 3, 32, 40, dtype=torch.uint8)})
    assert torch.allclose(cond["state"], policy.normalizer.normalize("state", state))


def test_noise_draws_run_the_encoder_once_per_observation():
    policy = ActionChunkPolicy(camera_config(noise_draws=3), stats())
    calls = []
    policy.image_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    loss = policy.compute_loss(batch(4))
    loss.backward()
    assert calls == [4]  # 4 images encoded once, the head saw 12 noisy chunks
    assert torch.isfinite(loss)
    assert policy.image_encoder.pool.log_temperature.grad is not None


def test_noise_draws_average_over_more_noise():
    """With a fixed model the 8-draw loss varies less between calls than the 1-draw one."""
    def spread(draws):
        policy = ActionChunkPolicy(camera_config(noise_draws=draws), stats())
        torch.manual_seed(1)
        policy.load_state_dict(base.state_dict())
        with torch.no_grad():
            losses = [float(policy.compute_loss(b)) for _ in range(12)]
        return float(torch.tensor(losses).std())

    torch.manual_seed(0)
    base = ActionChunkPolicy(camera_config(), stats())
    b = batch(4)
    assert spread(8) < spread(1)


class _Meta:
    def __init__(self, mask):
        self.camera_names, self.image_size = ["cam_high"], (32, 40)
        self.state_mask, self.action_slots = mask, SLOTS
        self.env_state_dim, self.control_frequency, self.embodiment = 0, 50.0, "aloha_sim"


class _Reader:
    path = "dataset"

    def __init__(self, mask):
        self.meta = _Meta(mask)


def test_state_slots_joint_positions_drops_velocities_and_eef_pose():
    mask = [False] * 128
    for s in (0, 1, 10, 15, 16, 25, 30, 31, 50, 60, 65):  # pos, gripper, vel, eef
        mask[s] = True
    cfg = policy_config_for_dataset({"state_slots": "joint_positions"}, _Reader(mask))
    assert cfg.state_slots == [0, 1, 10, 50, 60]
    cfg = policy_config_for_dataset({}, _Reader(mask))
    assert cfg.state_slots == [0, 1, 10, 15, 16, 25, 30, 31, 50, 60, 65]
    with pytest.raises(ConfigError, match="state_slots"):
        policy_config_for_dataset({"state_slots": "positions"}, _Reader(mask))


def test_precision_auto_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert hardware.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))
    assert hardware.resolve_precision("auto", "cpu") == "fp32"
    assert hardware.resolve_precision("bf16", "cpu") == "bf16"  # explicit choice honoured
    with pytest.raises(ValueError, match="precision"):
        hardware.resolve_precision("fp16", "cpu")


def test_cpu_flags_reads_this_machine():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    assert hardware.cpu_has_native_bf16() == any(f in flags for f in hardware.NATIVE_BF16_FLAGS)


BF16_TOL = 0.05  # max abs difference of normalized chunks ([-1, 1] range) vs float32


def test_convnet_bf16_chunks_match_fp32():
    torch.manual_seed(0)
    cfg = camera_config()
    policy = ActionChunkPolicy(cfg, stats())
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    rng = np.random.default_rng(0)
    obs = Observation(images={"cam_high": rng.integers(0, 255, (1, 32, 40, 3), dtype=np.uint8)},
                      state=rng.uniform(-1, 1, (1, 128)).astype(np.float32),
                      state_mask=np.ones(128, bool), control_frequency=50.0)
    noise = rng.normal(size=(8, 4)).astype(np.float32)
    ref = policy.predict_chunk(obs, noise)
    low = policy.to_inference_dtype(torch.bfloat16, channels_last=True).predict_chunk(obs, noise)
    assert np.abs(ref - low).max() < BF16_TOL  # stats are [-1, 1]: data units = normalized


def test_bf16_training_step_under_autocast_is_finite_and_close_to_fp32():
    torch.manual_seed(0)
    policy = ActionChunkPolicy(camera_config(), stats())
    b = batch(4)
    torch.manual_seed(5)
    with torch.no_grad():
        ref = float(policy.compute_loss(b))
    torch.manual_seed(5)
    with hardware.autocast("bf16", "cpu"):
        low = policy.compute_loss(b)
    low.backward()
    assert abs(float(low.detach()) - ref) < 0.05 * max(ref, 1e-3) + 0.01
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
