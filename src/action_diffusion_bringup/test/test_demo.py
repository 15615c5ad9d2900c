"""`make demo`: who drives the sim, the episodes' outcome, the video, through the real nodes."""

import json
import os
import subprocess
import sys

import pytest

from action_diffusion_bringup import demo
from action_diffusion_bringup.description import CHECKPOINT_FILES, BringupError


def fake_checkpoint_dir(path):
    path.mkdir()
    for name in CHECKPOINT_FILES:
        (path / name).write_text("{}")
    return path


def test_the_expert_drives_until_a_checkpoint_ships(tmp_path, monkeypatch):
    missing = tmp_path / "shipped"
    monkeypatch.setattr(demo, "DEFAULT_CHECKPOINT", missing)
    monkeypatch.setattr(demo, "REPO_ROOT", tmp_path)
    given, driver = demo.choose_driver(str(missing))
    assert given == {"policy": "false", "expert": "true"}
    assert driver.startswith("the SCRIPTED EXPERT") and "no trained checkpoint at shipped" in driver
    # Once the checkpoint is there, the same default switches the demo to the policy.
    fake_checkpoint_dir(missing)
    given, driver = demo.choose_driver(str(missing))
    assert given == {"policy": "true", "expert": "false", "checkpoint": str(missing)}
    assert driver.startswith("the LEARNED POLICY")
    assert demo.choose_driver("none")[0]["expert"] == "true"


def test_a_checkpoint_the_user_names_must_exist(tmp_path):
    with pytest.raises(BringupError, match="no such directory"):
        demo.choose_driver(str(tmp_path / "typo"))


def run_demo(tmp_path, *args, timeout=240):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "action_diffusion_bringup.demo",
            "--artifacts",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DEMO_EPISODES": "1"},
    )
    log = tmp_path / "demo_nodes.log"
    nodes = log.read_text()[-4000:] if log.exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + nodes
    return result.stdout, json.loads((tmp_path / "demo_summary.json").read_text())


def video_frames(path):
    import imageio.v2 as imageio

    with imageio.get_reader(path) as reader:
        return [frame for frame in reader]


@pytest.mark.ros
def test_demo_with_the_scripted_expert_succeeds_and_writes_a_video(tmp_path):
    out, summary = run_demo(tmp_path, "--checkpoint", "none", "--seed", "3")
    assert "driven by: the SCRIPTED EXPERT (scripted_expert_node), not a learned policy" in out
    assert "episode 1/1 seed 3: SUCCESS" in out
    assert "transfer_cube success rate: 1/1 = 100%" in out
    assert summary["successes"] == 1 and summary["results"][0]["seed"] == 3
    assert summary["results"][0]["chunks"] == 0  # no policy in the loop
    frames = video_frames(tmp_path / "demo_transfer_cube.mp4")
    assert len(frames) > 50  # 25 images per sim second, a success takes ~6 s
    assert frames[0].shape == (240, 320, 3)
    assert frames[0].std() > 10  # a rendered scene, not a blank frame


@pytest.mark.ros
@pytest.mark.slow
def test_demo_with_a_checkpoint_drives_the_sim_through_the_policy_nodes(tmp_path):
    """An untrained tiny checkpoint: proves the switch and the plumbing, not the skill."""
    import torch

    from action_diffusion_policy.checkpoint import save_checkpoint
    from action_diffusion_policy.config import PolicyConfig
    from action_diffusion_policy.policy import ActionChunkPolicy
    from unified_action_space import load_embodiment

    slots = [int(s) for s in load_embodiment("aloha_sim", kinematics=False).action_slots]
    torch.manual_seed(0)
    config = PolicyConfig(
        backbone="unet",
        size="tiny",
        horizon=8,
        n_obs_steps=1,
        camera_names=["cam_high"],
        image_size=(24, 32),
        state_slots=slots,
        action_slots=slots,
        control_frequency=50.0,
        embodiments=["aloha_sim"],
        num_inference_steps=2,
    )
    checkpoint = save_checkpoint(ActionChunkPolicy(config), tmp_path / "tiny")
    out, summary = run_demo(tmp_path, "--checkpoint", str(checkpoint), "--steps", "40")
    assert f"driven by: the LEARNED POLICY {checkpoint}" in out
    assert "nodes: sim, unified_state, policy, action_executor" in out
    assert summary["results"][0]["steps"] >= 40
    assert summary["results"][0]["chunks"] > 0  # the policy acted during the episode
    log = (tmp_path / "demo_nodes.log").read_text()
    assert "[policy] " in log and "active: inference running" in log


def test_video_frame_shows_the_scene_beside_what_the_policy_saw():
    import numpy as np

    from action_diffusion_policy.data.images import resize

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    out = demo.side_by_side(frame, ["cam_high"], (96, 128), 0.96)
    assert out.shape[0] % 16 == 0 and out.shape[1] % 16 == 0
    np.testing.assert_array_equal(out[20:, :320], frame[20:])  # the scene (below the label)
    view = demo.policy_view(frame, (96, 128), 0.96)
    small = resize(frame, (96, 128))[2:94, 2:125]  # the checkpoint's centre crop, 92x123
    assert view.shape[0] == 240
    assert abs(float(view.mean()) - float(small.mean())) < 1.0  # same pixels, scaled up
    np.testing.assert_array_equal(out[30:, 324:324 + view.shape[1]], view[30:])
    blind = demo.side_by_side(frame, [], None, 1.0)  # a privileged-state checkpoint
    assert blind[30:, 324:644].max() == 0
