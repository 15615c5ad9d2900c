"""Round trips of the unified state node's message <-> array conversions (no ROS graph)."""

import numpy as np
import pytest

from unified_action_space.nodes import conversions as cv


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_732_100_000_123_456_789])
def test_stamp_round_trip(ns):
    stamp = cv.ns_to_stamp(ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert cv.stamp_to_ns(stamp) == ns


def test_joint_state_round_trip():
    names = ["waist", "shoulder", "left_finger"]
    pos, vel = np.array([0.1, -0.2, 0.03]), np.array([1.0, 2.0, -0.5])
    msg = cv.arrays_to_joint_state(names, pos, vel, stamp_ns=5_000_000_123)
    names2, pos2, vel2, stamp = cv.joint_state_to_arrays(msg)
    assert names2 == names and stamp == 5_000_000_123
    np.testing.assert_array_equal(pos2, pos)
    np.testing.assert_array_equal(vel2, vel)


def test_joint_state_without_velocity_gives_none():
    msg = cv.arrays_to_joint_state(["a"], [1.0])
    assert cv.joint_state_to_arrays(msg)[2] is None


def test_unified_state_round_trip():
    rng = np.random.default_rng(0)
    values = rng.normal(size=128).astype(np.float32)
    mask = rng.random(128) > 0.5
    msg = cv.unified_state_to_msg(values, mask, "aloha_sim", 50.0, 7_000_000_001)
    v2, m2, name, freq, stamp = cv.unified_state_from_msg(msg)
    np.testing.assert_array_equal(v2, values)
    np.testing.assert_array_equal(m2, mask)
    assert (name, freq, stamp) == ("aloha_sim", 50.0, 7_000_000_001)
    assert v2.dtype == np.float32 and m2.dtype == bool


def test_unified_state_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="128"):
        cv.unified_state_to_msg(np.zeros(14), np.zeros(14, bool), "x", 50.0, 0)
