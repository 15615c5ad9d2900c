"""policy_fit_problems: a checkpoint that does not fit the embodiment is refused, saying why."""

import numpy as np

from action_diffusion_policy.runtime.policy_fit import default_camera_topics, policy_fit_problems
from action_diffusion_policy.types import PolicySpec

ACTION_SLOTS = [0, 1, 10, 50, 51, 60]
MASK = np.zeros(128, dtype=bool)
MASK[ACTION_SLOTS] = True


def spec(**kwargs) -> PolicySpec:
    base = dict(
        camera_names=["cam_high"],
        image_size=(48, 64),
        n_obs_steps=2,
        horizon=16,
        action_slots=ACTION_SLOTS,
        state_slots=ACTION_SLOTS,
        checkpoint_id="abc",
    )
    return PolicySpec(**{**base, **kwargs})


def test_fitting_checkpoint_has_no_problems():
    assert policy_fit_problems(spec(), "aloha", ACTION_SLOTS, MASK, ["/cam"]) == []
    # extra predicted slots are fine (the executor picks its own)
    wide = spec(action_slots=[*ACTION_SLOTS, 100])
    assert policy_fit_problems(wide, "aloha", ACTION_SLOTS, MASK, ["/cam"]) == []


def test_each_misfit_is_named():
    single_arm = spec(action_slots=[0, 1, 10], state_slots=[0, 1, 10, 30])
    problems = policy_fit_problems(single_arm, "aloha", ACTION_SLOTS, MASK, [], "")
    assert len(problems) == 3
    assert "commanded on [50, 51, 60]" in problems[0]
    assert "state slots [30]" in problems[1]
    assert "camera_topics has 0" in problems[2] and "cam_high" in problems[2]
    lowdim = spec(camera_names=[], env_state_dim=7)
    (problem,) = policy_fit_problems(lowdim, "aloha", ACTION_SLOTS, MASK, [], "")
    assert "env_state_topic" in problem
    assert policy_fit_problems(lowdim, "aloha", ACTION_SLOTS, MASK, [], "/sim/episode_status") == []


def test_default_camera_topics():
    known = {"cam_high": "/cameras/cam_high/image_raw"}
    assert default_camera_topics(["cam_high", "wrist"], known) == [
        "/cameras/cam_high/image_raw",
        "/cameras/wrist/image_raw",
    ]


def test_a_checkpoint_camera_the_robot_does_not_publish_is_named():
    cameras = {"cam_high": "/realsense_top/color/image_raw"}
    (problem,) = policy_fit_problems(spec(camera_names=["cam_front"]), "piper", ACTION_SLOTS,
                                     MASK, ["/cameras/cam_front/image_raw"],
                                     embodiment_cameras=cameras)
    assert "['cam_front']" in problem and "piper" in problem and "cam_high" in problem
    assert "camera_topics" in problem
    ok = policy_fit_problems(spec(), "aloha", ACTION_SLOTS, MASK, ["/cam"],
                             embodiment_cameras={"cam_high": "/cam"})
    assert ok == []
