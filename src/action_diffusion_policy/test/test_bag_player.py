"""bag_player over real DDS: every message arrives, with the bag's timing scaled by the rate,
and /clock carries the bag's time line."""

import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState

from action_diffusion_policy.testing.synthetic_bag import write_synthetic_bag


@pytest.fixture
def listener():
    rclpy.init()
    node = rclpy.create_node("bag_player_listener")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    got = {"js": [], "clock": []}
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(
        JointState, "/follower_left/joint_states",
        lambda m: got["js"].append((time.monotonic(), m.position[0],
                                    m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)), qos)
    node.create_subscription(
        Clock, "/clock", lambda m: got["clock"].append(m.clock.sec * 10**9 + m.clock.nanosec), 100)
    stop = threading.Event()
    th = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05)
                                          for _ in iter(stop.is_set, True)], daemon=True)
    th.start()
    yield node, got
    stop.set()
    th.join(timeout=5)
    node.destroy_node()
    rclpy.shutdown()


@pytest.mark.ros
def test_player_publishes_every_message_with_timing_and_clock(listener, bag_replay, tmp_path):
    node, got = listener
    # 1 s of joint states at 50 Hz, then a 0.5 s pause, then 0.5 s more.
    stamps = np.concatenate([np.arange(0, 1, 0.02), np.arange(1.5, 2.0, 0.02)])
    bag = write_synthetic_bag(tmp_path / "b", stamps)
    replay = bag_replay(bag, rate=2.0, topics=["/follower_left/joint_states"], start_delay=1.0)
    deadline = time.monotonic() + 10
    while node.count_publishers("/follower_left/joint_states") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    replay.wait(timeout=30)
    time.sleep(0.5)
    assert replay.published == len(stamps)
    assert len(got["js"]) == len(stamps)
    arrival = np.array([g[0] for g in got["js"]])
    values = np.array([g[1] for g in got["js"]])
    np.testing.assert_allclose(values, stamps)  # in order, nothing lost
    # Original spacing / rate 2: 10 ms steps and one 260 ms pause.
    gaps = np.diff(arrival)
    assert np.median(gaps) == pytest.approx(0.010, abs=0.004)
    assert gaps.max() == pytest.approx(0.26, abs=0.05)
    assert arrival[-1] - arrival[0] == pytest.approx(1.98 / 2.0, abs=0.1)
    # /clock: the bag's time, never going backwards, spanning the recording.
    clock = np.array(got["clock"])
    t0 = 1_000_000_000_000
    assert len(clock) > 50
    assert np.all(np.diff(clock) >= 0)
    assert clock.min() >= t0 - 1 and clock.max() == t0 + round(1.98 * 1e9)


@pytest.mark.ros
def test_player_loops(listener, bag_replay, tmp_path):
    _, got = listener
    stamps = np.arange(0, 0.2, 0.02)
    bag = write_synthetic_bag(tmp_path / "b", stamps)
    replay = bag_replay(bag, rate=4.0, topics=["/follower_left/joint_states"], loop=True,
                        start_delay=1.0)
    deadline = time.monotonic() + 20
    while replay.published < 3 * len(stamps) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replay.published >= 3 * len(stamps) and not replay.node.finished.is_set()
    time.sleep(0.3)
    values = [g[1] for g in got["js"]]
    assert values[: 2 * len(stamps)] == pytest.approx(list(stamps) * 2)  # starts over
