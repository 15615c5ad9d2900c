"""The committed sample bag (recorded by recorder_node from the real sim nodes): what it holds,
the dataset built from it obeys the resampling rule, and replaying it through the real
unified_state_node reproduces the recorded joint states."""

import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from action_diffusion_msgs.msg import UnifiedState
from action_diffusion_policy.data.bags import (
    header_stamp_ns,
    iter_messages,
    open_bag,
    read_episode_metadata,
)
from action_diffusion_policy.data.build_dataset import build_dataset
from action_diffusion_policy.data.format import DatasetReader

JS = {"right": "/follower_right/joint_states", "left": "/follower_left/joint_states"}


def _joint_states(bag, topic):
    with open_bag(bag) as reader:
        return [(header_stamp_ns(m), np.array(m.position)) for _, _, m in
                iter_messages(bag, reader, [topic])]


def test_sample_bag_contents(sample_bag):
    size = sum(f.stat().st_size for f in sample_bag.iterdir())
    assert size < 3_000_000
    assert list(sample_bag.glob("*.mcap"))
    meta = read_episode_metadata(sample_bag)
    assert (meta.embodiment, meta.task) == ("aloha_sim", "transfer_cube")
    assert meta.instruction
    with open_bag(sample_bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        duration = reader.duration / 1e9
    assert 3.0 < duration < 6.0
    for topic in [*JS.values(), "/follower_left/commands/joint_positions",
                  "/cameras/cam_high/image_raw", "/unified_state", "/sim/episode_status"]:
        assert counts[topic] > 50, topic


def test_dataset_from_sample_bag_follows_the_rule(sample_bag, tmp_path):
    report = build_dataset(bags=[sample_bag], output=tmp_path / "ds", image_size=(48, 64),
                           progress=False)
    ds = DatasetReader(tmp_path / "ds")
    assert report["frames"] == ds.num_frames > 150
    assert ds.meta.camera_names == ["cam_high", "cam_left_wrist"]
    assert ds.meta.env_state_dim == 7  # one cube pose
    assert np.ptp(ds.state[:, 60]) > 0.1  # the left gripper moves
    # Rebuild the clock from the bag: t0 = the first instant every input has a sample (header
    # stamps where messages carry one, receive time for the commands), then 20 ms ticks.
    firsts = []
    with open_bag(sample_bag) as reader:
        for topic in [*JS.values(), "/follower_left/commands/joint_positions",
                      "/follower_right/commands/joint_positions", "/cameras/cam_high/image_raw",
                      "/cameras/cam_left_wrist/image_raw", "/sim/episode_status"]:
            _, log, msg = next(iter_messages(sample_bag, reader, [topic]))
            firsts.append(header_stamp_ns(msg) or log)
    ticks = max(firsts) + np.round(np.arange(ds.num_frames) * 1e9 / 50).astype(np.int64)
    assert report["per_bag"][0]["dropped"] == 0
    # Every tick's state is the latest joint state at or before it, never a later one.
    right = _joint_states(sample_bag, JS["right"])
    stamps = np.array([s for s, _ in right])
    waist = np.array([p[0] for _, p in right], np.float32)
    want = waist[np.searchsorted(stamps, ticks, side="right") - 1]
    np.testing.assert_array_equal(ds.state[:, 0], want)


@pytest.mark.ros
def test_replay_through_unified_state_node(sample_bag, bag_replay):
    from unified_action_space.nodes.unified_state_node import UnifiedStateNode

    rclpy.init()
    try:
        node = UnifiedStateNode(parameter_overrides=[
            Parameter("embodiment", value="aloha_sim"), Parameter("use_sim_time", value=True)])
        listener = rclpy.create_node("unified_state_listener")
        got = []
        listener.create_subscription(UnifiedState, "/unified_state", got.append, 100)
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        ex.add_node(listener)
        stop = threading.Event()
        th = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05)
                                              for _ in iter(stop.is_set, True)], daemon=True)
        th.start()
        replay = bag_replay(sample_bag, topics=list(JS.values()), start_delay=1.0)
        replay.wait(timeout=60)
        time.sleep(0.3)
        stop.set()
        th.join(timeout=5)
        arms = {slot: _joint_states(sample_bag, JS[arm])
                for slot, arm in ((0, "right"), (50, "left"))}
        assert len(got) > 50
        all_stamps = {s for states in arms.values() for s, _ in states}
        for msg in got:
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert stamp in all_stamps  # stamped with a recorded input's stamp
            # Each arm's waist is the recorded one of a joint state at or shortly before the
            # stamp (the two arms' messages of one step may arrive in either order).
            for slot, states in arms.items():
                recent = [p[0] for s, p in states if stamp - 100_000_000 <= s <= stamp]
                assert np.isclose(recent, msg.values[slot], atol=1e-6).any(), (slot, stamp)
        node.destroy_node()
        listener.destroy_node()
    finally:
        rclpy.shutdown()
