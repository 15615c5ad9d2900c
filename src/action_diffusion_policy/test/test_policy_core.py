"""Policy core: config validation, backbones x heads, checkpoints, bad input, bf16, zero-init."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from action_diffusion_policy.checkpoint import CheckpointError, load_policy, save_checkpoint
from action_diffusion_policy.config import ConfigError, PolicyConfig
from action_diffusion_policy.heads import FlowMatchingHead, make_head
from action_diffusion_policy.models.dit import DiTBlock
from action_diffusion_policy.normalizer import Normalizer
from action_diffusion_policy.policy import ActionChunkPolicy
from action_diffusion_policy.types import Observation

torch.set_num_threads(1)

BACKBONES = ["unet", "dit", "rdt"]
HEADS = [  # (head, prediction_type, sampler)
    ("ddpm", "epsilon", "ddim"),
    ("ddpm", "sample", "dpmsolver++"),
    ("ddpm", "epsilon", "ddpm"),
    ("flow", "epsilon", "euler"),
]
STATE_SLOTS = [0, 1, 2, 10]
ACTION_SLOTS = [0, 1, 2, 10]


def lowdim_config(backbone="unet", head=("ddpm", "epsilon", "ddim"), **kw) -> PolicyConfig:
    h, pred, sampler = head
    base = dict(backbone=backbone, size="tiny", head=h, prediction_type=pred, sampler=sampler,
                horizon=8, n_obs_steps=2, state_slots=STATE_SLOTS, action_slots=ACTION_SLOTS,
                env_state_dim=3, num_train_timesteps=50, num_inference_steps=5,
                embodiments=["aloha_sim"])
    base.update(kw)
    return PolicyConfig(**base)


def make_stats(cfg: PolicyConfig) -> dict:
    rng = np.random.default_rng(0)
    lo = rng.uniform(-2, -1, 128)
    hi = rng.uniform(1, 3, 128)
    hi[10] = lo[10]  # a constant slot
    return {"state": {"min": lo.tolist(), "max": hi.tolist()},
            "action": {"min": lo.tolist(), "max": hi.tolist()},
            "env_state": {"min": [-1.0] * cfg.env_state_dim, "max": [1.0] * cfg.env_state_dim}}


def perturb(policy: torch.nn.Module, scale: float = 0.05) -> None:
    """Random weights everywhere, so zero-initialised outputs are not trivially zero."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def make_obs(cfg: PolicyConfig, seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    t = cfg.n_obs_steps
    mask = np.zeros(128, bool)
    mask[cfg.state_slots] = True
    images = {}
    if cfg.camera_names:
        h, w = cfg.image_size
        images = {c: rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8) for c in cfg.camera_names}
    return Observation(
        images=images, state=rng.normal(size=(t, 128)).astype(np.float32), state_mask=mask,
        env_state=rng.normal(size=(t, cfg.env_state_dim)).astype(np.float32)
        if cfg.env_state_dim else None,
        lang_embedding=rng.normal(size=(5, cfg.lang_dim)).astype(np.float32)
        if cfg.lang_dim else None,
        control_frequency=50.0)


def make_batch(cfg: PolicyConfig, b: int = 4) -> dict:
    t, hor = cfg.n_obs_steps, cfg.horizon
    batch = {"state": torch.randn(b, t, 128), "state_mask": torch.ones(b, 128, dtype=torch.bool),
             "action": torch.randn(b, hor, 128), "action_is_pad": torch.zeros(b, hor, dtype=bool)}
    if cfg.env_state_dim:
        batch["env_state"] = torch.randn(b, t, cfg.env_state_dim)
    if cfg.camera_names:
        h, w = cfg.image_size
        batch["images"] = torch.randint(0, 256, (b, len(cfg.camera_names), t, 3, h, w),
                                        dtype=torch.uint8)
    if cfg.lang_dim:
        batch["lang_embedding"] = torch.randn(b, 6, cfg.lang_dim)
        batch["lang_mask"] = torch.ones(b, 6, dtype=torch.bool)
    return batch


# ------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize("kw, field", [
    ({"backbone": "mlp"}, "backbone"),
    ({"size": "huge"}, "size"),
    ({"head": ("flow", "epsilon", "ddim")}, "sampler"),
    ({"prediction_type": "v"}, "prediction_type"),
    ({"horizon": 6, "size": "small"}, "horizon"),  # 3-level U-Net needs a multiple of 4
    ({"action_slots": [0, 200]}, "action_slots"),
    ({"camera_names": ["top"], "image_size": None}, "image_size"),
    ({"backbone_overrides": {"depthh": 3}}, "backbone_overrides"),
])
def test_config_rejects_bad_values_naming_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        lowdim_config(**kw)


def test_presets_have_published_sizes():
    from action_diffusion_policy.config import RDT_PRESETS, UNET_PRESETS

    assert RDT_PRESETS["rdt-1b"].hidden == 2048 and RDT_PRESETS["rdt-1b"].depth == 28
    assert RDT_PRESETS["rdt-1b"].heads == 32
    assert RDT_PRESETS["rdt-170m"].hidden == 1024 and RDT_PRESETS["rdt-170m"].depth == 14
    assert UNET_PRESETS["reference"].down_dims == (256, 512, 1024)


# ------------------------------------------------------------------------------------------
# every backbone x head: loss, determinism, save/load round trip


@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h[0]}-{h[1]}-{h[2]}")
@pytest.mark.parametrize("backbone", BACKBONES)
def test_round_trip_and_determinism(backbone, head, tmp_path):
    torch.manual_seed(0)
    cfg = lowdim_config(backbone, head)
    policy = ActionChunkPolicy(cfg, make_stats(cfg))
    perturb(policy)
    loss = policy.compute_loss(make_batch(cfg))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.backbone.parameters())

    obs = make_obs(cfg)
    noise = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    a = policy.predict_chunk(obs, noise)
    assert a.shape == (8, 4) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, policy.predict_chunk(obs, noise))
    other = policy.predict_chunk(obs, noise + 1.0)
    assert np.abs(other - a).max() > 1e-4
    assert np.allclose(a[:, 3], make_stats(cfg)["action"]["min"][10])  # constant slot

    save_checkpoint(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.predict_chunk(obs, noise), a)
    spec = loaded.spec
    assert spec.action_slots == ACTION_SLOTS and spec.state_slots == STATE_SLOTS
    assert spec.horizon == 8 and spec.n_obs_steps == 2 and spec.env_state_dim == 3
    assert spec.embodiments == ["aloha_sim"] and len(spec.checkpoint_id) == 16
    assert spec.checkpoint_id == policy.checkpoint_id
    assert not list(tmp_path.glob("*.tmp-*"))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_visuomotor_round_trip(backbone, tmp_path):
    torch.manual_seed(0)
    cfg = lowdim_config(backbone, camera_names=["cam_high", "cam_left_wrist"],
                        image_size=(32, 40), env_state_dim=0, crop_ratio=0.9,
                        lang_dim=8 if backbone == "rdt" else 0)
    policy = ActionChunkPolicy(cfg, make_stats(cfg))
    perturb(policy, 0.01)
    policy.train()
    assert torch.isfinite(policy.compute_loss(make_batch(cfg, b=2)))
    obs = make_obs(cfg)
    noise = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    a = policy.predict_chunk(obs, noise)
    save_checkpoint(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.predict_chunk(obs, noise), a)
    assert loaded.spec.camera_names == ["cam_high", "cam_left_wrist"]
    assert loaded.spec.image_size == (32, 40)
    if backbone == "rdt":  # the language embedding changes the chunk
        obs.lang_embedding = obs.lang_embedding + 1.0
        assert np.abs(loaded.predict_chunk(obs, noise) - a).max() > 1e-5


def test_condition_is_encoded_once_per_chunk(monkeypatch):
    cfg = lowdim_config("rdt", num_inference_steps=5)
    policy = ActionChunkPolicy(cfg, make_stats(cfg))
    calls = {"encode": 0, "kv": 0, "step": 0}
    for name, obj, attr in (("encode", policy, "encode_obs"),
                            ("kv", policy.backbone.blocks[0].cross, "key_values"),
                            ("step", policy.backbone, "forward")):
        orig = getattr(obj, attr)

        def wrapped(*a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            return _orig(*a, **k)

        monkeypatch.setattr(obj, attr, wrapped)
    policy.predict_chunk(make_obs(cfg))
    assert calls == {"encode": 1, "kv": 1, "step": 5}


@pytest.mark.parametrize("head", [HEADS[0], HEADS[3]], ids=["ddim", "flow"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_jit_traced_step_matches_eager(backbone, head):
    torch.manual_seed(0)
    cfg = lowdim_config(backbone, head, lang_dim=8 if backbone == "rdt" else 0)
    policy = ActionChunkPolicy(cfg, make_stats(cfg))
    perturb(policy)
    obs = make_obs(cfg)
    noise = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    eager = policy.predict_chunk(obs, noise)
    policy.enable_jit()
    np.testing.assert_allclose(policy.predict_chunk(obs, noise), eager, atol=1e-5)
    assert policy._traced and all(v is not False for v in policy._traced.values())
    obs.lang_embedding = None  # another context signature: traced again, still correct
    policy.enable_jit(False)
    eager = policy.predict_chunk(obs, noise)
    policy.enable_jit()
    np.testing.assert_allclose(policy.predict_chunk(obs, noise), eager, atol=1e-5)


# ------------------------------------------------------------------------------------------
# bad input


@pytest.fixture(scope="module")
def visuomotor_policy():
    cfg = lowdim_config("unet", camera_names=["top", "wrist"], image_size=(32, 40),
                        env_state_dim=2)
    return ActionChunkPolicy(cfg, make_stats(cfg))


def _bad(obs, **changes):
    for k, v in changes.items():
        setattr(obs, k, v)
    return obs


@pytest.mark.parametrize("case, pattern", [
    ("image_shape", r"images\['top'\].*\(2, 32, 40, 3\).*\(2, 40, 32, 3\)"),
    ("image_dtype", r"images\['top'\].*uint8.*float32"),
    ("camera_count", r"images: expected cameras \['top', 'wrist'\] \(2\), got \['top'\] \(1\)"),
    ("nan_state", r"state: expected finite values.*slots \[2\]"),
    ("mask", r"state_mask: expected.*\[0, 1, 2, 10\].*\[10\] unset"),
    ("state_shape", r"state: expected shape \(2, 128\), got \(2, 14\)"),
    ("env_state", r"env_state: expected shape \(2, 2\), got None"),
])
def test_bad_observation_names_field_expected_actual(visuomotor_policy, case, pattern):
    cfg = visuomotor_policy.config
    obs = make_obs(cfg)
    if case == "image_shape":
        obs.images["top"] = np.zeros((2, 40, 32, 3), np.uint8)
    elif case == "image_dtype":
        obs.images["top"] = obs.images["top"].astype(np.float32)
    elif case == "camera_count":
        del obs.images["wrist"]
    elif case == "nan_state":
        obs.state[1, 2] = np.nan
    elif case == "mask":
        obs.state_mask[10] = False
    elif case == "state_shape":
        obs.state = np.zeros((2, 14), np.float32)
    elif case == "env_state":
        obs.env_state = None
    with pytest.raises(ValueError, match=pattern):
        visuomotor_policy.predict_chunk(obs)


def test_bad_noise_shape(visuomotor_policy):
    with pytest.raises(ValueError, match=r"noise: expected shape \(8, 4\)"):
        visuomotor_policy.predict_chunk(make_obs(visuomotor_policy.config), np.zeros((8, 3)))


# ------------------------------------------------------------------------------------------
# checkpoint errors (never a pickle load)


@pytest.fixture()
def saved(tmp_path):
    cfg = lowdim_config("dit")
    policy = ActionChunkPolicy(cfg, make_stats(cfg))
    return save_checkpoint(policy, tmp_path / "ckpt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "nope")


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        load_policy(saved)


def test_corrupt_weights(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_policy(saved)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_policy(saved, verify_hash=False)


def test_corrupt_config(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is corrupt"):
        load_policy(saved)


def test_other_model_type(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["model_type"] = "bert"
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model_type is 'bert'.*another kind of model"):
        load_policy(saved)


def test_pickle_files_are_never_loaded(saved, monkeypatch):
    (saved / "model.safetensors").rename(saved / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(CheckpointError, match="missing"):
        load_policy(saved)


# ------------------------------------------------------------------------------------------
# heads: time convention and determinism


def test_flow_time_convention_t1_noise_t0_data():
    """With the exact velocity of the straight path to one point x0, Euler lands on x0."""
    head = FlowMatchingHead(lowdim_config(head=("flow", "epsilon", "euler")))
    x0 = torch.randn(3, 8, 4)

    def oracle(x, t_scaled):  # x_t = (1-t) x0 + t eps  =>  v = (x_t - x0) / t
        t = (t_scaled / 1000.0)[:, None, None]
        return (x - x0) / t

    out = head.sample(oracle, torch.randn(3, 8, 4))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    t = head.sample_time(20000, "cpu")
    assert t.min() >= head.t_min and t.max() <= 1.0
    assert t.mean() > 0.55  # Beta(1.5, 1) on the noisy end: E[t] ~ 0.6


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver++"])
def test_diffusion_sampler_reaches_oracle_sample(sampler):
    """A model that always predicts the clean chunk is denoised onto it by every sampler."""
    cfg = lowdim_config(head=("ddpm", "sample", sampler), num_train_timesteps=100,
                        num_inference_steps=10)
    head = make_head(cfg)
    x0 = torch.rand(2, 8, 4) * 1.6 - 0.8
    noise = torch.randn(2, 8, 4)
    out = head.sample(lambda x, t: x0, noise)
    tol = 0.05 if sampler == "ddpm" else 1e-3  # ddpm's last step keeps a little noise
    torch.testing.assert_close(out, x0, atol=tol, rtol=0)
    torch.testing.assert_close(head.sample(lambda x, t: x0, noise), out, atol=0, rtol=0)


# ------------------------------------------------------------------------------------------
# zero-init identity properties


def test_dit_block_starts_as_identity_and_outputs_zero():
    block = DiTBlock(32, 4, 4.0, 0.0)
    x, c = torch.randn(2, 8, 32), torch.randn(2, 32)
    torch.testing.assert_close(block(x, c), x, atol=0, rtol=0)
    cfg = lowdim_config("dit")
    policy = ActionChunkPolicy(cfg)
    ctx = policy.backbone.prepare_condition({"global": torch.randn(2, policy.global_dim)})
    assert policy.backbone(torch.randn(2, 8, 4), torch.tensor([3, 7]), ctx).abs().max() == 0


def test_rdt_decoder_starts_at_zero():
    cfg = lowdim_config("rdt")
    policy = ActionChunkPolicy(cfg, make_stats(cfg))
    batch = policy.validate_observation(make_obs(cfg))
    cond = policy._prepare_batch(batch)
    ctx = policy.backbone.prepare_condition(cond)
    out = policy.backbone(torch.randn(1, 8, 4), torch.tensor([5]), ctx)
    assert out.shape == (1, 8, 4) and out.abs().max() == 0


# ------------------------------------------------------------------------------------------
# bf16 inference


BF16_TOL = 0.05  # max abs difference of normalized chunks ([-1, 1] range) vs float32


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bf16_chunks_match_fp32(backbone):
    torch.manual_seed(0)
    cfg = lowdim_config(backbone, camera_names=["top"], image_size=(32, 32), env_state_dim=0)
    policy = ActionChunkPolicy(cfg, make_stats(cfg))
    perturb(policy, 0.02)
    obs = make_obs(cfg)
    noise = np.random.default_rng(3).normal(size=(8, 4)).astype(np.float32)
    ref = policy.predict_chunk(obs, noise)
    low = policy.to_inference_dtype(torch.bfloat16).predict_chunk(obs, noise)
    assert next(policy.backbone.parameters()).dtype == torch.bfloat16
    norm = policy.normalizer
    ref_n = norm.normalize("action", torch.from_numpy(ref))
    low_n = norm.normalize("action", torch.from_numpy(low))
    assert (ref_n - low_n).abs().max() < BF16_TOL


# ------------------------------------------------------------------------------------------
# normalizer


def test_normalizer_round_trip_and_constant_slots():
    norm = Normalizer({"action": 3})
    norm.set_stats("action", [0.0, -2.0, 5.0], [1.0, 2.0, 5.0])
    x = torch.tensor([[0.0, -2.0, 5.0], [1.0, 2.0, 5.0], [0.5, 0.0, 5.0]])
    y = norm.normalize("action", x)
    torch.testing.assert_close(y, torch.tensor([[-1.0, -1, 0], [1, 1, 0], [0, 0, 0]]))
    torch.testing.assert_close(norm.unnormalize("action", y), x)
    assert torch.isfinite(norm.normalize("action", x + 1)).all()
    assert (norm.unnormalize("action", torch.full((1, 3), 0.7))[:, 2] == 5.0).all()
    with pytest.raises(ValueError, match="'action'"):
        norm.set_stats("action", [0.0], [1.0])
