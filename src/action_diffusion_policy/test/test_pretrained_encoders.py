"""Optional frozen SigLIP image / T5 text encoders, with tiny random configs saved locally
(nothing is downloaded: everything loads with local_files_only=True)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from action_diffusion_policy.checkpoint import load_policy, save_checkpoint
from action_diffusion_policy.config import PolicyConfig
from action_diffusion_policy.models.encoders import SiglipImageEncoder, T5TextEncoder
from action_diffusion_policy.policy import ActionChunkPolicy
from action_diffusion_policy.types import Observation

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    cfg = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=37,
                                          num_hidden_layers=1, num_attention_heads=2,
                                          image_size=32, patch_size=8)
    path = tmp_path_factory.mktemp("siglip")
    transformers.SiglipVisionModel(cfg).save_pretrained(path)
    return path


def test_siglip_policy_is_frozen_and_round_trips(siglip_dir, tmp_path):
    torch.manual_seed(0)
    cfg = PolicyConfig(backbone="rdt", size="tiny", horizon=8, n_obs_steps=1,
                       camera_names=["top"], image_size=(24, 32), state_slots=[0],
                       action_slots=[0, 1], vision_encoder="siglip",
                       vision_encoder_path=str(siglip_dir), num_inference_steps=3)
    policy = ActionChunkPolicy(cfg)
    assert isinstance(policy.image_encoder, SiglipImageEncoder)
    frozen = {k: v.clone() for k, v in policy.image_encoder.model.state_dict().items()}
    assert not any(p.requires_grad for p in policy.image_encoder.model.parameters())
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    batch = {"images": torch.randint(0, 256, (2, 1, 1, 3, 24, 32), dtype=torch.uint8),
             "state": torch.randn(2, 1, 128), "action": torch.randn(2, 8, 128)}
    policy.train()
    loss = policy.compute_loss(batch)
    loss.backward()
    opt.step()
    for k, v in policy.image_encoder.model.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    # 16 patch tokens of the 32x32 resized frame reach the RDT image stream
    assert policy.backbone.img_pos.shape[1] == 16 + 1

    mask = np.zeros(128, bool)
    mask[0] = True
    obs = Observation({"top": np.full((1, 24, 32, 3), 100, np.uint8)},
                      np.zeros((1, 128), np.float32), mask)
    noise = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    chunk = policy.predict_chunk(obs, noise)
    save_checkpoint(policy, tmp_path / "ckpt")
    siglip_file = siglip_dir / "model.safetensors"
    siglip_file.rename(siglip_dir / "moved")  # loading must not need the original directory
    try:
        loaded = load_policy(tmp_path / "ckpt")
    finally:
        (siglip_dir / "moved").rename(siglip_file)
    np.testing.assert_array_equal(loaded.predict_chunk(obs, noise), chunk)


def test_t5_text_encoder_feeds_language_tokens():
    cfg = transformers.T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                num_heads=2)
    enc = T5TextEncoder(model=transformers.T5EncoderModel(cfg))
    emb = enc.encode_ids([3, 5, 7, 1], attention_mask=[1, 1, 1, 0])
    assert emb.shape == (3, 16) and emb.dtype == np.float32
    with pytest.raises(ValueError, match="tokenizer"):
        enc.encode("pick up the cube")

    policy_cfg = PolicyConfig(backbone="rdt", size="tiny", horizon=8, n_obs_steps=1,
                              state_slots=[0], action_slots=[0, 1], lang_dim=enc.dim,
                              num_inference_steps=3)
    policy = ActionChunkPolicy(policy_cfg)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    mask = np.zeros(128, bool)
    mask[0] = True
    obs = Observation({}, np.zeros((1, 128), np.float32), mask, lang_embedding=emb)
    noise = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    a = policy.predict_chunk(obs, noise)
    obs.lang_embedding = enc.encode_ids([9, 11, 13])
    assert np.abs(policy.predict_chunk(obs, noise) - a).max() > 1e-6
