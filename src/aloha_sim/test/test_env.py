"""AlohaSimEnv: seeded resets, command validation, joint state, rendering, rewards."""

import numpy as np
import pytest

from aloha_sim.env import (
    ARMS,
    CAMERAS,
    COMMAND_SIZE,
    JOINT_NAMES,
    TASKS,
    AlohaSimEnv,
)


@pytest.fixture(scope="module")
def cube_env():
    env = AlohaSimEnv("transfer_cube", render_size=(48, 64), cameras=tuple(CAMERAS))
    yield env
    env.close()


@pytest.mark.parametrize("task", sorted(TASKS))
def test_reset_is_deterministic_per_seed_and_inside_the_start_ranges(task):
    env = AlohaSimEnv(task, render_size=None)
    env.reset(3)
    first = env.object_poses()
    env.step()
    env.reset(3)
    np.testing.assert_array_equal(env.object_poses(), first)
    env.reset(4)
    assert not np.allclose(env.object_poses(), first)
    assert first.shape == (7 * len(TASKS[task].objects),)
    for i, ((xlo, xhi), (ylo, yhi), _) in enumerate(TASKS[task].start_ranges):
        assert xlo <= first[7 * i] <= xhi and ylo <= first[7 * i + 1] <= yhi
    assert env.step_count == 0 and env.reward == 0 and not env.success and env.time == 0.0


def test_joint_state_names_and_shapes(cube_env):
    cube_env.reset(0)
    assert JOINT_NAMES == (
        "waist",
        "shoulder",
        "elbow",
        "forearm_roll",
        "wrist_angle",
        "wrist_rotate",
        "left_finger",
        "right_finger",
    )
    for arm in ARMS:
        q = cube_env.joint_positions(arm)
        assert q.shape == (8,) and cube_env.joint_velocities(arm).shape == (8,)
        np.testing.assert_allclose(q[6], -q[7])  # fingers are symmetric
        np.testing.assert_allclose(cube_env.command_target(arm), cube_env.home_command(arm))


def test_valid_command_moves_the_arm_and_fingers_symmetrically(cube_env):
    cube_env.reset(0)
    command = cube_env.home_command("left")
    command[0] = 0.3
    command[6] = 0.05
    for _ in range(50):
        assert cube_env.step({"left": command}) == {"left": True}
    q = cube_env.joint_positions("left")
    assert abs(q[0] - 0.3) < 0.02
    assert abs(q[6] - 0.05) < 0.002 and abs(q[7] + 0.05) < 0.002
    # the other arm held its home pose
    np.testing.assert_allclose(
        cube_env.joint_positions("right")[:6], cube_env.home_command("right")[:6], atol=0.02
    )


@pytest.mark.parametrize(
    "bad",
    [
        [np.nan, 0, 0, 0, 0, 0, 0.03],
        [0, np.inf, 0, 0, 0, 0, 0.03],
        [0, -1.9, 0, 0, 0, 0, 0.03],  # shoulder below -1.85
        [0, 0, 0, 0, 3.0, 0, 0.03],  # wrist_angle above 2.23
        [0, 0, 0, 0, 0, 0, 0.2],  # finger far open
        [0, 0, 0, 0, 0, 0],  # 6 values
    ],
)
def test_bad_command_is_rejected_counted_and_the_arm_holds(cube_env, bad):
    cube_env.reset(0)
    for _ in range(10):
        cube_env.step()
    held = cube_env.joint_positions("right")
    target = cube_env.command_target("right")
    before = cube_env.rejected_commands["right"]
    for _ in range(25):
        assert cube_env.step({"right": bad}) == {"right": False}
    assert cube_env.rejected_commands["right"] == before + 25
    assert cube_env.last_rejection.startswith("right")
    np.testing.assert_array_equal(cube_env.command_target("right"), target)
    np.testing.assert_allclose(cube_env.joint_positions("right"), held, atol=5e-3)


def test_real_finger_range_is_accepted_and_clipped_to_the_model(cube_env):
    cube_env.reset(0)
    command = cube_env.home_command("left")
    command[6] = 0.01844  # real ALOHA closed; the model closes at 0.021
    assert cube_env.validate_command("left", command) is None
    cube_env.step({"left": command})
    assert cube_env.command_target("left")[6] == pytest.approx(0.021)


def test_array_command_and_its_size_check(cube_env):
    cube_env.reset(0)
    both = np.stack([cube_env.home_command(a) for a in ARMS])
    assert cube_env.step(both) == {"left": True, "right": True}
    with pytest.raises(ValueError, match="2x7"):
        cube_env.step(np.zeros(13))
    assert COMMAND_SIZE == 7


def test_render_every_camera(cube_env):
    cube_env.reset(0)
    cube_env.step()
    frames = cube_env.render_all()
    assert set(frames) == set(CAMERAS)
    for name, image in frames.items():
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8, name
        assert image.std() > 1.0, f"{name} rendered a flat image"


def test_unknown_names_are_reported():
    with pytest.raises(ValueError, match="known tasks"):
        AlohaSimEnv("stack_blocks")
    with pytest.raises(ValueError, match="cam_high"):
        AlohaSimEnv("transfer_cube", cameras=("cam_low",))
    with pytest.raises(RuntimeError, match="render_size=None"):
        AlohaSimEnv("transfer_cube", render_size=None).render("cam_high")


def test_lifting_nothing_gives_no_reward(cube_env):
    cube_env.reset(1)
    for _ in range(20):
        cube_env.step()
    assert cube_env.task_reward() == 0 and not cube_env.success
    assert cube_env.max_reward == 4


def test_render_from_another_thread_than_the_first_render():
    """A node renders once in __init__ and then from its spin thread (node_main)."""
    import threading

    env = AlohaSimEnv("transfer_cube", render_size=(48, 64), cameras=("cam_high",))
    env.reset(0)
    first = env.render("cam_high")
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("frame", env.render("cam_high")))
    thread.start()
    thread.join()
    np.testing.assert_array_equal(out["frame"], first)
    env.close()
