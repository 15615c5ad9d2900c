"""The shipped camera-only checkpoint reads its image (issue: policies that see).

A policy that ignores its cameras can still reach a low training loss from the joint states,
so these checks are made on the policy's behaviour at the sim's reset, where only the image
says where the cube is. Each fails for a policy that ignores its cameras: its chunk at the
reset state would be the same for every cube position.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from action_diffusion_bringup.sim_probe import (
    RENDER_SIZE,
    gripper_xy,
    pair_report,
    run_episode,
)
from action_diffusion_policy.checkpoint import load_policy
from aloha_sim.env import AlohaSimEnv
from unified_action_space import load_embodiment

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "transfer_cube_camera"
# Seed pairs whose cubes lie far apart (x and y differ by > 8 cm); outside every range used to
# train (0-99), select (2000-2049) or report (1000-1049).
SEED_PAIRS = [(3001, 3010), (3006, 3008), (3003, 3009)]
ROLLOUT_STEPS = 75  # 1.5 s: the right arm is on its way to the cube


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return load_policy(CHECKPOINT)


@pytest.fixture(scope="module")
def env(policy):
    return AlohaSimEnv("transfer_cube", render_size=RENDER_SIZE,
                       cameras=tuple(policy.spec.camera_names))


def test_the_checkpoint_is_camera_only(policy):
    spec = policy.spec
    assert spec.camera_names == ["cam_high"]
    assert spec.env_state_dim == 0
    names_ok = all(s < 15 or 50 <= s < 65 for s in spec.state_slots)  # joint/gripper positions
    assert names_ok, spec.state_slots


def cube_xy(env, seed):
    env.reset(seed)
    return env.object_poses()[:2].copy()  # the cube's (x, y): the first 2 of its 7-d pose


def test_seed_pairs_put_the_cube_far_apart(env):
    for a, b in SEED_PAIRS:
        assert np.all(np.abs(cube_xy(env, a) - cube_xy(env, b)) > 0.08), (a, b)


@pytest.mark.parametrize("pair", SEED_PAIRS)
def test_first_chunks_differ_and_follow_their_own_cube(policy, env, pair):
    """At the reset the arms and the state are the same for both seeds: only the image
    differs. The first chunks differ, and each is nearer the expert's first commands for its
    own cube than for the other."""
    report = pair_report(policy, env, load_embodiment("aloha_sim"), *pair)
    assert report["first_chunk_difference"] > 1e-3, report  # a blind policy: ~1e-6
    assert report["own_expert_closer"], report


@pytest.mark.parametrize("pair", SEED_PAIRS)
def test_swapping_the_image_moves_the_chunk_far_beyond_sampler_noise(policy, env, pair):
    """0.6 s into the expert's approach: the same state with the other seed's image. (At the
    reset itself the expert's first chunks differ by only ~0.006 rad, less than the sampler's
    own spread, so the effect is measured where the demonstrations differ.)"""
    report = pair_report(policy, env, load_embodiment("aloha_sim"), *pair, steps_in=30)
    assert report["ratio"] > 2.5, report  # this checkpoint: 3.5-5.1; a blind policy: ~0
    assert report["mean_ratio"] > 2.5, report


@pytest.mark.parametrize("pair", SEED_PAIRS)
def test_the_right_arm_heads_toward_the_cube(policy, env, pair):
    embodiment = load_embodiment("aloha_sim")
    tips, cubes = [], []
    for seed in pair:
        cubes.append(cube_xy(env, seed))
        run_episode(env, policy, embodiment, seed, every=3, strategy="temporal_ensembling",
                    max_steps=ROLLOUT_STEPS)
        tips.append(gripper_xy(env, "right"))
    d_tip, d_cube = tips[0] - tips[1], cubes[0] - cubes[1]
    # The gripper's displacement between the two episodes points the way the cubes differ ...
    assert float(d_tip @ d_cube) > 0, (tips, cubes)
    # ... and each gripper is nearer its own cube than the other episode's.
    for i in range(2):
        assert np.linalg.norm(tips[i] - cubes[i]) < np.linalg.norm(tips[i] - cubes[1 - i])
