"""StateAssembler: the unified state only while every arm is fresh; hand-computed values."""

import numpy as np
import pytest

from unified_action_space import JointStateError, load_embodiment
from unified_action_space.state_assembler import MISSING, STALE, StateAssembler, describe_problems

NAMES = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
         "left_finger", "right_finger"]  # fmt: skip
# aloha_sim gripper opening: left_finger (m), raw [0.01844, 0.05800] -> [0, 1]
Q_LEFT = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.03822, -0.03822]  # opening (0.03822-0.01844)/0.03956
Q_RIGHT = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.01844, -0.01844]  # opening 0
MS = 1_000_000  # ns


@pytest.fixture(scope="module")
def embodiment():
    return load_embodiment("aloha_sim", kinematics=False)


def assembler(embodiment, stale_timeout=0.5):
    return StateAssembler(embodiment, stale_timeout, fk=False)


def test_every_arm_fresh_gives_the_mapped_state_and_newest_stamp(embodiment):
    a = assembler(embodiment)
    a.update("left", NAMES, Q_LEFT, None, 1_000 * MS, received_ns=10 * MS)
    a.update("right", NAMES, Q_RIGHT, [0.5] * 8, 1_020 * MS, received_ns=12 * MS)
    state, problems = a.assemble(now_ns=400 * MS)
    assert problems == {}
    assert state.stamp == 1_020 * MS  # the newest of the two stamps
    # right arm joints -> slots 0..5, its opening -> slot 10; left arm -> 50..55 and 60
    np.testing.assert_allclose(state.values[[0, 1, 2, 3, 4, 5]], [1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(state.values[[50, 51, 52, 53, 54, 55]],
                               [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], rtol=1e-6)  # fmt: skip
    assert state.values[60] == pytest.approx(0.5)
    assert state.values[10] == pytest.approx(0.0, abs=1e-7)
    # right velocities only (left sent none): joints 15..20, gripper 25 = 0.5 / 0.03956 m
    np.testing.assert_allclose(state.values[15:21], 0.5)
    assert state.values[25] == pytest.approx(0.5 / 0.03956, rel=1e-5)
    expected_mask = [0, 1, 2, 3, 4, 5, 10, 15, 16, 17, 18, 19, 20, 25,
                     50, 51, 52, 53, 54, 55, 60]  # fmt: skip
    assert np.nonzero(state.mask)[0].tolist() == expected_mask
    assert state.values.dtype == np.float32 and state.mask.dtype == bool


def test_missing_arm_is_named_with_its_topic(embodiment):
    a = assembler(embodiment)
    a.update("left", NAMES, Q_LEFT, None, 1, received_ns=0)
    assert not a.complete
    state, problems = a.assemble(now_ns=0)
    assert state is None and list(problems) == ["right"]
    assert problems["right"].kind == MISSING
    assert problems["right"].text == "no joint state received on /follower_right/joint_states"


def test_an_arm_older_than_the_timeout_blocks_the_state(embodiment):
    a = assembler(embodiment, stale_timeout=0.5)
    a.update("left", NAMES, Q_LEFT, None, 1, received_ns=1_000 * MS)
    a.update("right", NAMES, Q_RIGHT, None, 1, received_ns=1_000 * MS)
    assert a.assemble(now_ns=1_500 * MS)[0] is not None  # exactly 0.5 s: still fresh
    a.update("left", NAMES, Q_LEFT, None, 2, received_ns=1_600 * MS)  # left keeps talking
    state, problems = a.assemble(now_ns=1_610 * MS)  # right: 0.61 s
    assert state is None and list(problems) == ["right"]
    assert problems["right"].kind == STALE
    assert problems["right"].age_s == pytest.approx(0.61)
    assert "is stale (0.61 s old)" in problems["right"].text
    assert describe_problems(problems).startswith("arm 'right': joint state on /follower_right")
    # The frozen arm talks again: fresh again.
    a.update("right", NAMES, Q_RIGHT, None, 3, received_ns=1_620 * MS)
    state, problems = a.assemble(now_ns=1_620 * MS)
    assert problems == {} and state.stamp == 3


def test_bad_values_raise_naming_the_arm_and_joint(embodiment):
    a = assembler(embodiment)
    q = list(Q_LEFT)
    q[2] = float("nan")
    a.update("left", NAMES, q, None, 1, received_ns=0)
    a.update("right", NAMES, Q_RIGHT, None, 1, received_ns=0)
    with pytest.raises(JointStateError) as info:
        a.assemble(now_ns=0)
    assert info.value.arm == "left" and "elbow" in str(info.value)


def test_clear_unknown_arm_and_bad_timeout(embodiment):
    a = assembler(embodiment)
    a.update("left", NAMES, Q_LEFT, None, 1, received_ns=0)
    a.update("right", NAMES, Q_RIGHT, None, 1, received_ns=0)
    assert a.complete and a.newest_stamp() == 1
    a.clear()
    assert not a.complete and a.newest_stamp() is None
    with pytest.raises(ValueError, match="arm 'middle' is not an arm of embodiment 'aloha_sim'"):
        a.update("middle", NAMES, Q_LEFT, None, 1, received_ns=0)
    with pytest.raises(ValueError, match=r"stale_timeout=0\.0"):
        StateAssembler(embodiment, 0.0)
