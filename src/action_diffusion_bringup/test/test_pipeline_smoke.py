"""The end-to-end pipeline's commands chained on a tiny budget, through the real nodes:
scripted-expert demos recorded as bags -> dataset -> training -> closed-loop evaluation.

What it proves is the plumbing (every stage reads what the previous one wrote); how well a
policy learns is the job of `make pipeline` and results/."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.ros]

CONFIGS = Path(__file__).resolve().parents[2] / "action_diffusion_policy" / "config"


def run(*args, timeout=600):
    result = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, (
        f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def test_collect_build_train_evaluate(tmp_path):
    bags, dataset, run_dir = tmp_path / "bags", tmp_path / "dataset", tmp_path / "run"
    run(
        "action_diffusion_bringup.collect",
        "--task",
        "transfer_cube",
        "--episodes",
        "2",
        "--bag-dir",
        str(bags),
        "--cameras",
        "",
        "--real-time-factor",
        "3",
    )
    run(
        "action_diffusion_policy.data.build_dataset",
        str(bags),
        "-o",
        str(dataset),
        "--only-success",
        "--no-progress",
    )
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["env_state_dim"] == 7 and meta["num_frames"] > 400

    config = yaml.safe_load((CONFIGS / "e2e_lowdim_unet_ddpm.yaml").read_text())
    config["train"].update(steps=20, checkpoint_every=20, val_every=20, warmup_steps=5)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    run(
        "action_diffusion_policy.training.train",
        "--config",
        str(tmp_path / "cfg.yaml"),
        "--dataset",
        str(dataset),
        "--output",
        str(run_dir),
        "--no-progress",
    )
    checkpoint = run_dir / "checkpoints" / "last"

    out = tmp_path / "eval.json"
    run(
        "action_diffusion_bringup.evaluate",
        "--checkpoint",
        str(checkpoint),
        "--seeds",
        "1000,1001",
        "--strategy",
        "receding_horizon",
        "--out",
        str(out),
    )
    report = json.loads(out.read_text())
    assert report["kind"] == "closed_loop" and report["episodes"] == 2
    assert [e["seed"] for e in report["per_episode"]] == [1000, 1001]
    assert report["latency_ms"]["chunks"] > 10  # the policy node really drove the episodes
    assert all(e["steps"] > 0 for e in report["per_episode"])
