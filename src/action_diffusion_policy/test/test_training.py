"""Training entry point and chunk dataset: windows, padding, checkpoints, logs, resume."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from action_diffusion_policy.checkpoint import load_policy
from action_diffusion_policy.config import ConfigError
from action_diffusion_policy.data.dataset import ChunkDataset, split_episodes
from action_diffusion_policy.data.synthetic import write_bimodal_dataset, write_reach_dataset
from action_diffusion_policy.training.train import load_config, lr_lambda, main
from action_diffusion_policy.types import Observation

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bimodal(tmp_path_factory):
    return write_bimodal_dataset(tmp_path_factory.mktemp("data") / "bimodal", num_episodes=6,
                                 episode_length=10)


def test_chunk_dataset_pads_at_episode_edges(bimodal):
    ds = ChunkDataset(bimodal, n_obs_steps=3, horizon=4)
    assert len(ds) == 60
    first = ds[0]  # tick 0: history repeats the first frame
    assert first["state"].shape == (3, 128)
    assert torch.equal(first["state"][0], first["state"][2])
    assert not first["action_is_pad"].any()
    last = ds[9]  # tick 9 of 10: three padded actions repeat the last one
    assert last["action_is_pad"].tolist() == [False, True, True, True]
    assert torch.equal(last["action"][1], last["action"][0])
    assert last["state"][:, 0].tolist() == pytest.approx([7 / 9, 8 / 9, 1.0])
    assert first["state_mask"].dtype == torch.bool and first["state_mask"][0]


def test_chunk_dataset_images(tmp_path):
    path = write_reach_dataset(tmp_path / "reach", num_episodes=2, episode_length=5,
                               cameras=("top", "wrist"), image_size=(16, 24))
    item = ChunkDataset(path, n_obs_steps=2, horizon=3)[4]
    assert item["images"].shape == (2, 2, 3, 16, 24) and item["images"].dtype == torch.uint8
    assert item["env_state"].shape == (2, 2)
    train, val = split_episodes(10, 0.2, seed=1)
    assert len(train) == 8 and len(val) == 2 and not set(train) & set(val)


def test_lr_warmup_then_cosine():
    f = lr_lambda(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-9)


def test_train_checkpoint_resume(bimodal, tmp_path):
    cfg = {"policy": {"backbone": "unet", "size": "tiny", "horizon": 8, "n_obs_steps": 1,
                      "num_inference_steps": 4},
           "train": {"steps": 12, "batch_size": 8, "warmup_steps": 2, "val_fraction": 0.3,
                     "val_every": 6, "checkpoint_every": 6, "log_every": 3, "val_batches": 2}}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    args = ["--config", str(cfg_path), "--dataset", str(bimodal), "--output", str(run),
            "--device", "cpu", "--no-progress"]
    main(args)
    rows = list(csv.DictReader((run / "log.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 12]
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)
    assert np.isfinite(float(rows[-1]["val_loss"]))
    assert (run / "checkpoints" / "step_0000006" / "model.safetensors").is_file()
    policy = load_policy(run / "checkpoints" / "last")
    spec = policy.spec
    assert spec.action_slots == [0, 1] and spec.state_slots == [0]
    assert spec.embodiments == ["synthetic_bimodal"] and spec.control_frequency == 10.0
    mask = np.zeros(128, bool)
    mask[0] = True
    chunk = policy.predict_chunk(Observation({}, np.zeros((1, 128), np.float32), mask))
    assert chunk.shape == (8, 2)

    with pytest.raises(FileExistsError, match="--resume"):
        main(args)
    # A longer budget for the same recipe: --steps overrides train.steps.
    main([*args, "--resume", "--steps", "18"])
    state = json.loads((run / "train_state" / "state.json").read_text())
    assert state["step"] == 18
    rows = list(csv.DictReader((run / "log.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows][-2:] == [15, 18]
    assert float(rows[-1]["lr"]) < float(rows[3]["lr"]) or float(rows[-1]["lr"]) == 0.0
    assert (run / "checkpoints" / "step_0000018").is_dir()


def test_config_errors_name_the_key(bimodal, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"policy": {"backbone": "unet"}, "train": {"stepz": 3}}))
    with pytest.raises(ConfigError, match="stepz"):
        main(["--config", str(bad), "--dataset", str(bimodal), "--output", str(tmp_path / "r")])
    bad.write_text(yaml.safe_dump({"policy": {"backbone": "unet"}}))
    with pytest.raises(ConfigError, match=r"train\.steps=0"):
        main(["--config", str(bad), "--dataset", str(bimodal), "--output", str(tmp_path / "r"),
              "--steps", "0"])
    bad.write_text(yaml.safe_dump({"policy": {"camera_names": ["top"], "image_size": [8, 8]}}))
    with pytest.raises(ConfigError, match=r"camera_names \['top'\]"):
        main(["--config", str(bad), "--dataset", str(bimodal), "--output", str(tmp_path / "r")])


def test_recipe_base_merges_sections_and_names_bad_bases(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(
        {"policy": {"backbone": "dit", "horizon": 16}, "train": {"steps": 7, "lr": 0.1}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(
        {"base": "a.yaml", "policy": {"horizon": 8}, "train": {"steps": 9}}))
    policy, train = load_config(tmp_path / "b.yaml")
    assert policy == {"backbone": "dit", "horizon": 8}
    assert (train.steps, train.lr) == (9, 0.1)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"base": "missing.yaml"}))
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such recipe \(the 'base' of"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"base": "d.yaml"}))
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "d.yaml")



def test_insertion_camera_recipe_is_the_transfer_recipe_with_more_steps():
    configs = Path(__file__).resolve().parents[1] / "config"
    cube_policy, cube_train = load_config(configs / "e2e_visuomotor_dit_flow.yaml")
    policy, train = load_config(configs / "e2e_visuomotor_dit_flow_insertion.yaml")
    assert policy == cube_policy and policy["env_state_dim"] == 0
    assert train.steps > cube_train.steps and train.batch_size == cube_train.batch_size


@pytest.mark.slow
def test_torchrun_two_processes_ddp(bimodal, tmp_path):
    """Multi-process training through torch's own launcher (gloo on CPU, nccl on GPUs)."""
    cfg = {"policy": {"backbone": "dit", "size": "tiny", "horizon": 8, "n_obs_steps": 1},
           "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "val_every": 2,
                     "checkpoint_every": 2, "log_every": 2}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(29500 + os.getpid() % 1000),
         "-m", "action_diffusion_policy.training.train", "--config", str(tmp_path / "cfg.yaml"),
         "--dataset", str(bimodal), "--output", str(tmp_path / "run"), "--device", "cpu",
         "--no-progress"], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert float(rows[0]["samples_per_s"]) > 0
    assert load_policy(tmp_path / "run" / "checkpoints" / "last").spec.horizon == 8
