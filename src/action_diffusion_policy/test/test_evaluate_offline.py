"""Offline evaluator: a tiny checkpoint over a bag and over a dataset; the reported errors are
the ones recomputed by hand from the same predictions."""

import json

import numpy as np
import pytest

from action_diffusion_policy.checkpoint import load_policy, save_checkpoint
from action_diffusion_policy.config import PolicyConfig
from action_diffusion_policy.data.build_dataset import build_dataset
from action_diffusion_policy.data.format import DatasetReader
from action_diffusion_policy.evaluation.offline import main, observation_at, run
from action_diffusion_policy.policy import ActionChunkPolicy
from action_diffusion_policy.testing.synthetic_bag import write_synthetic_bag

ACTION_SLOTS = [0, 1, 2, 3, 4, 5, 10, 50, 51, 52, 53, 54, 55, 60]


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    js = np.round(np.arange(0, 0.8, 0.02) + 0.003, 9)
    return write_synthetic_bag(d / "heldout", js, js, np.arange(0, 0.8, 1 / 30), js,
                               image_size=(48, 64))


def _checkpoint(root, bag, cameras):
    cfg = PolicyConfig(backbone="unet", size="tiny", horizon=8, n_obs_steps=2,
                       camera_names=cameras, image_size=(24, 32) if cameras else None,
                       state_slots=ACTION_SLOTS, action_slots=ACTION_SLOTS, env_state_dim=7,
                       num_train_timesteps=20, num_inference_steps=2, embodiments=["aloha_sim"])
    build_dataset(bags=[bag], output=root / "ds", image_size=(24, 32), progress=False)
    policy = ActionChunkPolicy(cfg, stats=DatasetReader(root / "ds").meta.stats)
    return save_checkpoint(policy, root / "ckpt")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, bag):
    return _checkpoint(tmp_path_factory.mktemp("ckpt"), bag, ["cam_high"])


@pytest.fixture(scope="module")
def lowdim_checkpoint(tmp_path_factory, bag):
    return _checkpoint(tmp_path_factory.mktemp("ckpt_lowdim"), bag, [])


def test_evaluate_bag_report_and_plots(bag, checkpoint, tmp_path):
    report = run(checkpoint, tmp_path / "out", bags=[bag], stride=4, seed=3, progress=False)
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["mae"] == pytest.approx(report["mae"])
    assert report["steps"] == 10 and report["horizon"] == 8 and report["episodes"] == 1
    assert set(saved["per_slot"]) >= {"right_arm_joint_0_pos", "left_gripper_open"}
    assert len(saved["mae_per_horizon_step"]) == 8
    for name in ("per_slot_error.png", "error_vs_horizon.png", "trajectories.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_errors_match_a_hand_computation(bag, lowdim_checkpoint, tmp_path):
    checkpoint = lowdim_checkpoint
    build_dataset(bags=[bag], output=tmp_path / "ds", image_size=(24, 32), progress=False)
    report = run(checkpoint, tmp_path / "out", dataset=tmp_path / "ds", stride=7, seed=1,
                 plots=False, progress=False)
    ds = DatasetReader(tmp_path / "ds")
    policy = load_policy(checkpoint)
    rng = np.random.default_rng(1)
    errs = []
    for t in range(0, ds.num_frames, 7):
        chunk = policy.predict_chunk(observation_at(ds, 0, t, policy.spec),
                                     noise=rng.standard_normal((8, 14)).astype(np.float32))
        n = min(8, ds.num_frames - t)
        errs.append((chunk[:n] - ds.action[t : t + n][:, ACTION_SLOTS])[:, 0])
    e = np.concatenate(errs)
    slot0 = report["per_slot"]["right_arm_joint_0_pos"]
    assert slot0["mae"] == pytest.approx(np.abs(e).mean(), rel=1e-5)
    assert slot0["rmse"] == pytest.approx(np.sqrt((e**2).mean()), rel=1e-5)


def test_cli_errors(checkpoint, tmp_path, capsys):
    assert main(["--checkpoint", str(checkpoint), "--dataset", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not a dataset" in capsys.readouterr().err
