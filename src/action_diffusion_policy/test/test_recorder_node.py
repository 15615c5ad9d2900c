"""recorder_node over real DDS: default topics from the embodiment, services, metadata in the
bag, contents identical to what was published, sqlite3 on request, auto episodes."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from ruamel.yaml import YAML
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from action_diffusion_msgs.msg import EpisodeStatus, UnifiedState
from action_diffusion_msgs.srv import StartRecording
from action_diffusion_policy.data.bags import iter_messages, open_bag, read_episode_metadata
from action_diffusion_policy.nodes.recorder_node import RecorderNode, parse_topic_specs

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
          "left_finger", "right_finger"]


class Harness:
    def __init__(self, tmp_path, **params):
        overrides = [Parameter("output_dir", value=str(tmp_path / "bags"))]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.rec = RecorderNode(parameter_overrides=overrides)
        self.node = rclpy.create_node("recorder_test_driver")
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.rec)
        self.ex.add_node(self.node)
        self.pubs = {}

    def pub(self, topic, cls):
        if topic not in self.pubs:
            self.pubs[topic] = self.node.create_publisher(cls, topic, 50)
        return self.pubs[topic]

    def spin(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)

    def call(self, srv, name, req):
        cli = self.node.create_client(srv, name)
        assert cli.wait_for_service(timeout_sec=10)
        fut = cli.call_async(req)
        end = time.monotonic() + 30
        while not fut.done() and time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.02)
        return fut.result()

    def wait_subscribed(self):
        end = time.monotonic() + 10
        while time.monotonic() < end and set(self.rec._subs) != set(self.pubs):
            self.spin(0.1)
        assert set(self.rec._subs) == set(self.pubs)
        self.spin(0.5)  # discovery of the new subscriptions by the publishers

    def close(self):
        self.rec.shutdown()
        self.rec.destroy_node()
        self.node.destroy_node()


def bag_info(bag):
    return YAML(typ="safe").load(Path(bag, "metadata.yaml").read_text())[
        "rosbag2_bagfile_information"]


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _joint_state(i):
    m = JointState(name=JOINTS, position=[float(i)] * 8, velocity=[0.0] * 8)
    m.header.stamp.sec = 100 + i
    return m


def test_parse_topic_specs():
    assert parse_topic_specs(["/a:sensor_msgs/msg/Image", "/b:std_msgs/String"]) == {
        "/a": "sensor_msgs/msg/Image", "/b": "std_msgs/msg/String"}
    with pytest.raises(ValueError, match="'/topic:pkg/msg/Type'"):
        parse_topic_specs(["a:sensor_msgs/msg/Image"])


@pytest.mark.ros
def test_records_embodiment_topics_with_metadata(ros, tmp_path):
    h = Harness(tmp_path, embodiment="aloha_sim")
    try:
        # The aloha_sim config decides the topics: 3 cameras, 2 joint states, 2 commands, ...
        assert h.rec.topics["/follower_left/commands/joint_positions"] == \
            "std_msgs/msg/Float64MultiArray"
        assert "/cameras/cam_high/image_raw" in h.rec.topics
        assert h.rec.topics["/sim/episode_status"] == "action_diffusion_msgs/msg/EpisodeStatus"
        cam = h.pub("/cameras/cam_high/image_raw", Image)
        js = h.pub("/follower_left/joint_states", JointState)
        cmd = h.pub("/follower_left/commands/joint_positions", Float64MultiArray)
        us = h.pub("/unified_state", UnifiedState)
        st = h.pub("/sim/episode_status", EpisodeStatus)
        h.wait_subscribed()
        # Before start nothing is written.
        js.publish(_joint_state(-1))
        h.spin(0.2)
        r = h.call(StartRecording, "/recorder/start", StartRecording.Request(
            task="transfer_cube", instruction="pick up the cube", notes="take 1"))
        assert r.success, r.message
        assert h.call(StartRecording, "/recorder/start", StartRecording.Request()).success is False
        img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
        for i in range(30):
            js.publish(_joint_state(i))
            cmd.publish(Float64MultiArray(data=[float(i)] * 7))
            if i % 3 == 0:
                m = Image(height=6, width=8, encoding="rgb8", step=24, data=img.tobytes())
                m.header.stamp.sec = 100 + i
                cam.publish(m)
            if i % 10 == 0:
                us.publish(UnifiedState(embodiment="aloha_sim", control_frequency=50.0))
                st.publish(EpisodeStatus(task="transfer_cube", step=i,
                                         object_poses=[0.1 * i] * 7))
            h.spin(0.01)
        h.spin(0.5)
        ok = h.call(SetBool, "/recorder/mark_success", SetBool.Request(data=True))
        assert ok.success
        stop = h.call(Trigger, "/recorder/stop", Trigger.Request())
        assert stop.success, stop.message
        info = json.loads(stop.message)
        assert info["lost"] == 0
        bag = r.bag_path
        with open_bag(bag) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
            msgs = list(iter_messages(bag, reader, list(counts)))
        assert counts["/follower_left/joint_states"] == 30
        assert counts["/follower_left/commands/joint_positions"] == 30
        assert counts["/cameras/cam_high/image_raw"] == 10
        assert counts["/unified_state"] == 3 and counts["/sim/episode_status"] == 3
        assert counts["/cameras/cam_left_wrist/image_raw"] == 0  # never published
        jsm = [m for t, _, m in msgs if t == "/follower_left/joint_states"]
        assert [m.position[0] for m in jsm] == [float(i) for i in range(30)]
        assert jsm[5].header.stamp.sec == 105 and list(jsm[0].name) == JOINTS
        image = next(m for t, _, m in msgs if t == "/cameras/cam_high/image_raw")
        np.testing.assert_array_equal(np.asarray(image.data).reshape(6, 8, 3), img)
        status = [m for t, _, m in msgs if t == "/sim/episode_status"]
        assert list(status[2].object_poses) == pytest.approx([2.0] * 7)
        # Metadata: metadata.yaml custom_data (what `ros2 bag info` shows) and episode.json.
        doc = bag_info(bag)
        assert doc["storage_identifier"] == "mcap"
        custom = doc["custom_data"]
        assert custom["task"] == "transfer_cube" and custom["success"] == "true"
        assert custom["instruction"] == "pick up the cube" and custom["embodiment"] == "aloha_sim"
        meta = read_episode_metadata(bag)
        assert (meta.notes, meta.success) == ("take 1", True)
        side = json.loads(Path(bag, "episode.json").read_text())
        assert side["message_counts"]["/follower_left/joint_states"] == 30
        # mark_success after stop edits the finished bag.
        assert h.call(SetBool, "/recorder/mark_success", SetBool.Request(data=False)).success
        assert read_episode_metadata(bag).success is False
        doc = bag_info(bag)
        assert doc["custom_data"]["success"] == "false"
        assert h.call(Trigger, "/recorder/stop", Trigger.Request()).success is False
    finally:
        h.close()


@pytest.mark.ros
def test_sqlite3_and_auto_episodes(ros, tmp_path):
    h = Harness(tmp_path, storage="sqlite3", auto_episode=True, post_success_s=0.0,
                topics=["/follower_left/joint_states:sensor_msgs/msg/JointState",
                        "/sim/episode_status:action_diffusion_msgs/msg/EpisodeStatus"])
    try:
        js = h.pub("/follower_left/joint_states", JointState)
        st = h.pub("/sim/episode_status", EpisodeStatus)
        h.wait_subscribed()
        for seed in (1, 2, 2):  # the second seed-2 episode: a reset with the same seed
            for i in range(10):
                st.publish(EpisodeStatus(task="insertion", seed=seed, step=i,
                                         success=(seed == 1 and i >= 8)))
                h.spin(0.02)
                js.publish(_joint_state(i))
                h.spin(0.02)
        h.spin(0.3)
        h.rec.shutdown()  # stops the open episode (seed 2)
        bags = sorted((tmp_path / "bags").iterdir())
        assert len(bags) == 3
        metas = [read_episode_metadata(b) for b in bags]
        assert [m.notes for m in metas] == ["seed=1", "seed=2", "seed=2"]
        assert [m.success for m in metas] == [True, False, False]
        assert metas[0].task == "insertion"
        assert (bags[0] / f"{bags[0].name}_0.db3").is_file() or list(bags[0].glob("*.db3"))
        with open_bag(bags[0]) as reader:
            n_js = {c.topic: c.msgcount for c in reader.connections}["/follower_left/joint_states"]
        # Episode 1 stops at the first success status (step 8): joint states 0..7 recorded.
        assert 7 <= n_js <= 9
    finally:
        h.close()


@pytest.mark.ros
def test_disk_full_stops_the_episode_keeps_it_and_refuses_the_next(ros, tmp_path, monkeypatch):
    """The free-space guard through the node: the episode is closed and kept, one clear error,
    and /recorder/start answers why until space returns."""
    from action_diffusion_policy.data import bags

    free = {"bytes": 10 * 2**30}
    monkeypatch.setattr(bags, "free_bytes", lambda path: free["bytes"])
    h = Harness(tmp_path, topics=["/follower_left/joint_states:sensor_msgs/msg/JointState"],
                flush_interval_s=0.05, min_free_mb=64.0)
    try:
        js = h.pub("/follower_left/joint_states", JointState)
        h.wait_subscribed()
        r = h.call(StartRecording, "/recorder/start", StartRecording.Request(task="t"))
        assert r.success, r.message
        for i in range(20):
            js.publish(_joint_state(i))
            h.spin(0.01)
        h.spin(0.3)
        free["bytes"] = 10 * 2**20  # the disk fills
        end = time.monotonic() + 10
        while h.rec._recorder is not None and time.monotonic() < end:
            js.publish(_joint_state(99))
            h.spin(0.02)
        assert h.rec._recorder is None, "the episode was not stopped"
        record = json.loads(Path(r.bag_path, "episode.json").read_text())
        assert record["stopped_by"] == "disk_full" and record["closed"] is True
        with open_bag(r.bag_path) as reader:  # closed cleanly, readable
            msgs = list(iter_messages(r.bag_path, reader, ["/follower_left/joint_states"]))
        assert [m.position[0] for _t, _s, m in msgs[:20]] == [float(i) for i in range(20)]
        refused = h.call(StartRecording, "/recorder/start", StartRecording.Request(task="t"))
        assert refused.success is False
        assert "disk full" in refused.message and "10.0 MiB free" in refused.message
        assert "min_free_mb" in refused.message
        free["bytes"] = 10 * 2**30  # space is back
        assert h.call(StartRecording, "/recorder/start", StartRecording.Request()).success
    finally:
        h.close()
