"""Fast inference paths agree with float32 eager, and the selection picks a correct one."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from action_diffusion_policy import inference_paths as ip
from action_diffusion_policy.config import PolicyConfig
from action_diffusion_policy.models.common import MatmulConv1d, use_matmul_convs
from action_diffusion_policy.policy import ActionChunkPolicy, compiler_missing

SLOTS = [0, 1, 2, 3, 4, 5, 10, 50, 51, 52, 53, 54, 55, 60]
SHIPPED = sorted(p.parent for p in (Path(__file__).resolve().parents[2]
                                    / "action_diffusion_bringup/checkpoints").glob("*/config.json"))


def tiny_policy(backbone: str, head: str = "ddpm", cameras=("cam_high",)) -> ActionChunkPolicy:
    torch.manual_seed(0)
    sampler = "ddim" if head == "ddpm" else "euler"
    cfg = PolicyConfig(backbone=backbone, size="tiny", head=head, sampler=sampler,
                       num_train_timesteps=100, num_inference_steps=4, horizon=16,
                       n_obs_steps=2, camera_names=list(cameras), image_size=(24, 32),
                       state_slots=SLOTS, action_slots=SLOTS)
    policy = ActionChunkPolicy(cfg).eval()
    with torch.no_grad():  # zero-initialised output layers (DiT's adaLN-zero) would compare 0s
        for param in policy.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return policy


def chunk(policy, obs, noise):
    return policy.predict_chunk(obs, noise=noise)


def one_step(policy, ref, obs) -> float:
    return ip.step_relative_error(policy, ref, obs, t_fraction=0.4, seed=3)


@pytest.mark.parametrize("backbone", ["unet", "dit", "rdt"])
def test_traced_and_bf16_paths_agree_with_fp32_eager(backbone):
    ref = tiny_policy(backbone)
    obs = ip.probe_observation(ref)
    noise = np.random.default_rng(0).standard_normal((16, len(SLOTS))).astype(np.float32)
    ref.enable_jit(False)
    want = chunk(ref, obs, noise)
    traced = ip.apply_path(copy.deepcopy(ref), "fp32-jit")
    assert ip.normalized_error(ref, chunk(traced, obs, noise), want) <= ip.TOLERANCE["fp32"]
    bf16 = ip.apply_path(copy.deepcopy(ref), "bf16-jit")
    assert bf16.inference_dtype == torch.bfloat16
    assert bf16.matmul_convs == (backbone == "unet")
    # One step in bf16 is within ~1 % of fp32 (8 mantissa bits); a random-weight chunk can
    # drift further through the sampler, so trained checkpoints carry the chunk-level check.
    assert one_step(bf16, ref, obs) < 0.03


def test_compiled_paths_agree_with_fp32_eager():
    if compiler_missing():
        pytest.skip(compiler_missing())
    ref = tiny_policy("unet")
    obs = ip.probe_observation(ref)
    noise = np.random.default_rng(1).standard_normal((16, len(SLOTS))).astype(np.float32)
    ref.enable_jit(False)
    want = chunk(ref, obs, noise)
    compiled = ip.apply_path(copy.deepcopy(ref), "fp32-compile")
    got = chunk(compiled, obs, noise)
    assert compiled._compiled, "the compiled modules were not used"
    assert ip.normalized_error(ref, got, want) <= ip.TOLERANCE["fp32"]


@pytest.mark.slow  # another compile (about 15 s here)
def test_compiled_bf16_agrees_with_fp32_eager():
    if compiler_missing():
        pytest.skip(compiler_missing())
    ref = tiny_policy("unet")
    obs = ip.probe_observation(ref)
    ref.enable_jit(False)
    bf16 = ip.apply_path(copy.deepcopy(ref), "bf16-compile")
    assert one_step(bf16, ref, obs) < 0.03
    assert bf16._compiled


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoints_agree_in_bf16(path):
    """Trained policies: the whole bf16 chunk stays within the selection's tolerance."""
    from action_diffusion_policy.checkpoint import load_policy

    ref = load_policy(path).eval()
    obs = ip.probe_observation(ref)
    noise = np.random.default_rng(0).standard_normal(
        (ref.config.horizon, ref.config.action_dim)).astype(np.float32)
    ref.enable_jit(False)
    want = chunk(ref, obs, noise)
    fast = ip.apply_path(copy.deepcopy(ref), "bf16-jit")
    err = ip.normalized_error(ref, chunk(fast, obs, noise), want)
    assert err <= ip.TOLERANCE["bf16"], (path, err)


def test_selection_picks_a_correct_path_and_leaves_the_policy_alone(monkeypatch):
    policy = tiny_policy("unet")
    weight = policy.backbone.final[1].weight.detach().clone()
    chosen, report = ip.select_inference_path(policy, paths=["fp32-jit", "bf16-jit"], repeats=1)
    rows = {r["path"]: r for r in report.rows}
    assert set(rows) == {"fp32", "fp32-jit", "bf16-jit"}
    assert rows[report.chosen]["ok"]
    fastest_ok = min((r for r in report.rows if r["ok"]), key=lambda r: r["p50_ms"])
    assert report.chosen == fastest_ok["path"]
    assert chosen is not policy and policy.inference_dtype == torch.float32
    assert torch.equal(policy.backbone.final[1].weight, weight)
    assert report.chosen in report.summary()
    # A path outside its tolerance is never taken, however fast.
    monkeypatch.setitem(ip.TOLERANCE, "bf16", 0.0)
    _, strict = ip.select_inference_path(policy, paths=["bf16-jit"], repeats=1)
    assert strict.chosen == "fp32"
    assert not {r["path"]: r for r in strict.rows}["bf16-jit"]["ok"]


def test_compile_is_skipped_where_chunks_are_already_fast():
    policy = tiny_policy("dit")
    _, report = ip.select_inference_path(policy, repeats=1, compile_min_chunk_ms=1e9)
    skipped = [r for r in report.rows if "skipped" in r]
    if not compiler_missing():
        assert skipped and "not worth" in skipped[0]["skipped"]
    assert not any(r["path"].endswith("compile") and "p50_ms" in r for r in report.rows)


def test_path_names_are_checked():
    assert ip.InferencePath.parse("bf16-compile") == ip.InferencePath("bf16", "compile")
    assert ip.InferencePath.parse("fp32").name == "fp32"
    with pytest.raises(ValueError, match=r"fp16.*expected one of"):
        ip.InferencePath.parse("fp16-jit")


def test_matmul_convolutions_compute_the_same_and_keep_the_state_dict():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(8, 6, 5, padding=2), torch.nn.Conv1d(6, 4, 3, 2, 1),
                              torch.nn.Conv1d(4, 3, 1), torch.nn.Conv1d(3, 3, 3, groups=3))
    x = torch.randn(2, 8, 16)
    keys = list(net.state_dict())
    want = net(x)
    assert use_matmul_convs(net) == 3  # the grouped one stays
    assert isinstance(net[0], MatmulConv1d) and type(net[3]) is torch.nn.Conv1d
    torch.testing.assert_close(net(x), want, atol=1e-5, rtol=1e-5)
    assert list(net.state_dict()) == keys
    assert use_matmul_convs(net, False) == 3 and type(net[0]) is torch.nn.Conv1d


def test_unet_film_split_is_the_same_linear_map():
    """prepare_condition's per-chunk FiLM terms + the per-step part = Linear(Mish([s, g]))."""
    policy = tiny_policy("unet", cameras=())
    block = policy.backbone.down[0][0]
    step = torch.randn(3, block.step_dim)
    glob = torch.randn(3, block.film[1].in_features - block.step_dim)
    whole = block.film(torch.cat([step, glob], dim=-1))
    lin = block.film[1]
    split = (torch.nn.functional.linear(torch.nn.functional.mish(step),
                                        lin.weight[:, : block.step_dim])
             + block.film_global(glob))
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-5)
