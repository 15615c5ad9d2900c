"""Round trips of the shared stamp / JointState / UnifiedState conversions (no ROS graph)."""

import numpy as np
import pytest

from unified_action_space import conversions as cv


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_732_100_000_123_456_789])
def test_stamp_round_trip(ns):
    stamp = cv.ns_to_stamp(ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert cv.stamp_to_ns(stamp) == ns


def test_joint_state_round_trip():
    names = ["waist", "shoulder", "left_finger"]
    pos, vel = np.array([0.1, -0.2, 0.03]), np.array([1.0, 2.0, -0.5])
    msg = cv.joint_state_to_msg(names, pos, vel, stamp_ns=5_000_000_123)
    names2, pos2, vel2, stamp = cv.joint_state_from_msg(msg)
    assert names2 == names and stamp == 5_000_000_123
    np.testing.assert_array_equal(pos2, pos)
    np.testing.assert_array_equal(vel2, vel)


def test_joint_state_without_velocity_gives_none():
    msg = cv.joint_state_to_msg(["a"], [1.0])
    assert cv.joint_state_from_msg(msg)[2] is None


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


def test_unified_state_rejects_wrong_sizes_on_receive():
    msg = cv.unified_state_to_msg(np.zeros(128), np.zeros(128, bool), "x", 50.0, 0)
    msg.values = np.zeros(127, np.float32)  # Jazzy accepts it unless ROS_PYTHON_CHECK_FIELDS=1
    with pytest.raises(ValueError, match=r"\(128,\) values and mask, got \(127,\)"):
        cv.unified_state_from_msg(msg)
    msg.values = np.zeros(128, np.float32)
    msg.mask = [True] * 12
    with pytest.raises(ValueError, match="128"):
        cv.unified_state_from_msg(msg)


def test_joint_state_sizes_are_checked_both_ways():
    with pytest.raises(ValueError, match="2 names, 3 positions"):
        cv.joint_state_to_msg(["a", "b"], [0.0, 1.0, 2.0])
    msg = cv.joint_state_to_msg(["a", "b"], [0.0, 1.0], [0.5])  # short velocities are allowed
    np.testing.assert_array_equal(cv.joint_state_from_msg(msg).velocities, [0.5])
    msg.position = [0.0]
    with pytest.raises(ValueError, match="2 names, 1 positions"):
        cv.joint_state_from_msg(msg)
    msg.position, msg.velocity = [0.0, 1.0], [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="3 velocities"):
        cv.joint_state_from_msg(msg)


@pytest.mark.parametrize("seconds", [0.0, 1.5, 1234.000000001, 0.9999999999, 1_732_100_000.25])
def test_seconds_stamps_agree_with_ns(seconds):
    stamp = cv.ns_to_stamp(0)
    cv.set_stamp(stamp, seconds)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert cv.stamp_to_ns(stamp) == cv.seconds_to_ns(seconds)
    assert cv.stamp_to_seconds(stamp) == pytest.approx(seconds, abs=1e-9)
    ns = cv.stamp_to_ns(stamp)
    msg = cv.unified_state_to_msg(np.zeros(128), np.zeros(128, bool), stamp_ns=ns)
    state = cv.unified_state_from_msg(msg)
    assert state.stamp_ns == ns and state.stamp == cv.stamp_to_seconds(stamp)  # bit for bit
