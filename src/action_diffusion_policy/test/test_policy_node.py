"""policy_node lifecycle and bad input: a misfit checkpoint fails configure with the reason;
wrong encodings, future and out-of-order stamps are dropped and counted; services work."""

import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState

from action_diffusion_msgs.msg import ActionChunk
from action_diffusion_msgs.srv import ResetEpisode, SetInstruction
from action_diffusion_policy.nodes.policy_node import PolicyNode
from action_diffusion_policy.runtime import conversions as cv
from action_diffusion_policy.testing.node_process import wait_until
from unified_action_space.conversions import seconds_to_ns, unified_state_to_msg

pytestmark = pytest.mark.ros

CAMERAS = ("cam_high",)


def make_checkpoint(path, action_slots, state_slots):
    import torch

    from action_diffusion_policy.checkpoint import save_checkpoint
    from action_diffusion_policy.config import PolicyConfig
    from action_diffusion_policy.policy import ActionChunkPolicy

    torch.manual_seed(0)
    config = PolicyConfig(
        backbone="unet", size="tiny", horizon=8, n_obs_steps=1, camera_names=list(CAMERAS),
        image_size=(24, 32), state_slots=list(state_slots), action_slots=list(action_slots),
        control_frequency=50.0, embodiments=["aloha_sim"], num_inference_steps=2,
    )  # fmt: skip
    return save_checkpoint(ActionChunkPolicy(config), path)


@pytest.fixture(scope="module")
def embodiment():
    from unified_action_space import load_embodiment

    return load_embodiment("aloha_sim", kinematics=False)


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def policy_node(checkpoint, **params):
    overrides = [
        Parameter("checkpoint", value=str(checkpoint)),
        Parameter("embodiment", value="aloha_sim"),
        Parameter("autostart", value=False),
        Parameter("torch_threads", value=1),
        *[Parameter(k, value=v) for k, v in params.items()],
    ]
    return PolicyNode(parameter_overrides=overrides)


def test_misfit_checkpoint_fails_configure_with_reason(tmp_path, embodiment, ros):
    right_only = [0, 1, 2, 3, 4, 5, 10]  # a single-arm checkpoint on a bimanual robot
    ckpt = make_checkpoint(tmp_path / "ckpt", right_only, right_only)
    node = policy_node(ckpt)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "does not fit embodiment 'aloha_sim'" in node.configure_error
        assert "[50, 51, 52, 53, 54, 55, 60]" in node.configure_error
        assert node.policy is None
        node2 = policy_node(tmp_path / "missing")
        assert node2.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "does not exist" in node2.configure_error
        node2.destroy_node()
    finally:
        node.destroy_node()


def test_num_inference_steps_goes_through_config_validation(tmp_path, embodiment, ros):
    """An invalid num_inference_steps fails configure with PolicyConfig's message instead of
    passing and then failing every inference; a valid one reaches config and sampler."""
    slots = [int(s) for s in embodiment.action_slots]
    ckpt = make_checkpoint(tmp_path / "ckpt", slots, slots)  # DDPM head, 100 train steps
    for bad in (1000, -1):
        node = policy_node(ckpt, num_inference_steps=bad)
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert f"parameter num_inference_steps={bad}: " in node.configure_error
            assert "num_train_timesteps=100" in node.configure_error
            assert node.policy is None
        finally:
            node.destroy_node()
    node = policy_node(ckpt, num_inference_steps=3)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.policy.config.num_inference_steps == 3
        assert node.policy.head.num_inference_steps == 3
    finally:
        node.destroy_node()
    node = policy_node(ckpt)  # 0: the checkpoint's
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.policy.head.num_inference_steps == 2
    finally:
        node.destroy_node()


def test_lifecycle_bad_input_and_services(tmp_path, embodiment, ros):
    slots = [int(s) for s in embodiment.action_slots]
    ckpt = make_checkpoint(tmp_path / "ckpt", slots, slots)
    node = policy_node(ckpt, state_source="unified_state")
    probe = Node("probe")
    chunks = []
    probe.create_subscription(ActionChunk, "/policy/action_chunk", chunks.append, 10)
    image_pub = probe.create_publisher(Image, "/cameras/cam_high/image_raw", 10)
    from action_diffusion_msgs.msg import UnifiedState

    state_pub = probe.create_publisher(UnifiedState, "/unified_state", 10)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        now = probe.get_clock().now().nanoseconds * 1e-9
        time.sleep(0.5)  # discovery
        values = np.zeros(128, np.float32)
        image = np.zeros((48, 64, 3), np.uint8)  # resized to 24x32
        bad = Image(height=2, width=2, encoding="16UC1", step=4, data=bytes(8))
        image_pub.publish(bad)
        image_pub.publish(cv.rgb_to_image_msg(image, Image, now + 5.0))  # future
        for i in range(5):
            t = now + 0.02 * i
            state_pub.publish(
                unified_state_to_msg(values, embodiment.state_mask, stamp_ns=seconds_to_ns(t))
            )
            image_pub.publish(cv.rgb_to_image_msg(image, Image, t))
            time.sleep(0.02)
        image_pub.publish(cv.rgb_to_image_msg(image, Image, now - 1.0))  # out of order

        def newest_stamp():
            return cv.chunk_from_msg(chunks[-1]).stamp if chunks else None

        end = time.monotonic() + 15
        while time.monotonic() < end and newest_stamp() != pytest.approx(now + 0.08, abs=1e-6):
            time.sleep(0.05)
        assert chunks, "no chunk published"
        chunk = cv.chunk_from_msg(chunks[-1])
        assert chunk.stamp == pytest.approx(now + 0.08, abs=1e-6)  # the newest observation
        assert chunk.actions.shape == (8, 14)
        assert node.counters["image_rejected"] == 1
        assert node.buffer.counters["future"] == 1
        assert node.buffer.counters["out_of_order"] == 1

        client = probe.create_client(SetInstruction, "/policy/set_instruction")
        assert client.wait_for_service(timeout_sec=5)
        future = client.call_async(SetInstruction.Request(instruction="pick up the cube"))
        end = time.monotonic() + 5
        while not future.done() and time.monotonic() < end:
            time.sleep(0.02)
        assert future.done(), "no reply from ~/set_instruction within 5 s"
        assert future.result().success and node.instruction == "pick up the cube"
        client = probe.create_client(ResetEpisode, "/policy/reset_episode")
        assert client.wait_for_service(timeout_sec=5)
        future = client.call_async(ResetEpisode.Request(seed=3, use_seed=True))
        end = time.monotonic() + 5  # a deadline of its own, not set_instruction's spent one
        while not future.done() and time.monotonic() < end:
            time.sleep(0.02)
        assert future.done(), "no reply from ~/reset_episode within 5 s"
        assert future.result().success and node.buffer.select()[1] == "waiting_for_cam_high"

        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node._worker is None
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.policy is None and node.buffer is None
    finally:
        executor.shutdown()
        thread.join(timeout=5)
        node.destroy_node()
        probe.destroy_node()


JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
          "left_finger", "right_finger"]  # fmt: skip
HOME = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.03, -0.03]
ARMS = ("left", "right")


class JointStateProbe:
    """A probe node that publishes the top camera and the arms' joint states (the driver
    topics of state_source joint_states) and collects the policy's chunks; it and the policy
    node spin on a 2-thread executor. Teardown stays in each test: one test checks its order."""

    def __init__(self, node):
        self.probe = Node("probe")
        self.chunks = []
        self.probe.create_subscription(ActionChunk, "/policy/action_chunk", self.chunks.append,
                                       10)
        self.image_pub = self.probe.create_publisher(Image, "/cameras/cam_high/image_raw", 10)
        self.js_pubs = {arm: self.probe.create_publisher(
            JointState, f"/follower_{arm}/joint_states", 10) for arm in ARMS}
        self.image = np.zeros((24, 32, 3), np.uint8)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(node)
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def publish(self, arms=ARMS) -> None:
        """One image and the given arms' joint states, stamped now."""
        now = self.probe.get_clock().now().nanoseconds * 1e-9
        for arm in arms:
            msg = JointState(name=JOINTS, position=HOME, velocity=[0.0] * 8)
            cv.set_stamp(msg.header.stamp, now)
            self.js_pubs[arm].publish(msg)
        self.image_pub.publish(cv.rgb_to_image_msg(self.image, Image, now))

    def publish_for(self, seconds: float, arms=ARMS, until=lambda: False) -> None:
        """``publish`` at 50 Hz for ``seconds`` or until ``until()``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            self.publish(arms)
            time.sleep(0.02)


def test_frozen_arm_stops_feeding_the_policy(tmp_path, embodiment, ros):
    """state_source joint_states: when one arm's driver stops, no state (so no chunk) is made
    from its last joint state once it is older than stale_timeout; it resumes with the arm."""
    slots = [int(s) for s in embodiment.action_slots]
    ckpt = make_checkpoint(tmp_path / "ckpt", slots, slots)
    node = policy_node(ckpt, state_source="joint_states", stale_timeout=0.3, jit=False)
    harness = JointStateProbe(node)
    chunks = harness.chunks
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        time.sleep(0.5)  # discovery
        harness.publish_for(1.0)
        assert wait_until(lambda: len(chunks) >= 2, 15.0), "no chunk with both arms fresh"
        harness.publish_for(0.6, ("left",))  # the right arm froze: stale after 0.3 s
        frozen = len(chunks)
        frozen_stamp = node.buffer.newest_stamps()["state"]
        harness.publish_for(1.0, ("left",))
        assert wait_until(lambda: node.counters["stale_state"] > 10, 5.0), node.counters
        assert node.buffer.newest_stamps()["state"] == frozen_stamp  # no state made since
        time.sleep(0.5)  # any inference still running ends
        assert len(chunks) <= frozen + 1, "the policy kept being fed from a frozen arm"
        harness.publish_for(1.0)  # the arm is back: fed again
        assert wait_until(lambda: len(chunks) > frozen + 1, 15.0)
        assert node.buffer.newest_stamps()["state"] > frozen_stamp
    finally:
        harness.executor.shutdown()
        harness.thread.join(timeout=5)
        node.destroy_node()
        harness.probe.destroy_node()


def test_destroyed_while_inferring_logs_no_error(tmp_path, embodiment, capfd):
    """Destroying an active node (what a clean shutdown does) stops the inference worker
    before its publisher and context go: no "inference failed" ERROR."""
    slots = [int(s) for s in embodiment.action_slots]
    ckpt = make_checkpoint(tmp_path / "ckpt", slots, slots)
    rclpy.init()
    node = policy_node(ckpt, state_source="joint_states", jit=False)
    harness = JointStateProbe(node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        # inference keeps running while the node is destroyed
        harness.publish_for(20.0, until=lambda: len(harness.chunks) >= 10)
        assert len(harness.chunks) >= 10
    finally:
        node.destroy_node()  # active, mid-stream
        harness.executor.shutdown()
        harness.thread.join(timeout=5)
        harness.probe.destroy_node()
        rclpy.shutdown()
    time.sleep(0.3)
    err = capfd.readouterr().err
    assert "[ERROR]" not in err, err
    assert node._worker is None


def test_joint_states_get_through_while_the_policy_infers(tmp_path, embodiment, ros):
    """The inference worker must not starve the callbacks: with CPython's default GIL switch
    interval the node took ~20 % of 50 Hz joint states while inferring, dropped the rest and
    saw live arms as stale. The node shortens the interval when it configures."""
    import sys

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # CPython's default: what a fresh node process starts with
    slots = [int(s) for s in embodiment.action_slots]
    ckpt = make_checkpoint(tmp_path / "ckpt", slots, slots)
    node = policy_node(ckpt, state_source="joint_states", stale_timeout=0.3, jit=False)
    taken = []
    on_joint_state = node._on_joint_state
    node._on_joint_state = lambda arm, msg, *topic: (
        taken.append(arm), on_joint_state(arm, msg, *topic))  # fmt: skip
    harness = JointStateProbe(node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert sys.getswitchinterval() <= 0.001
        time.sleep(0.5)  # discovery
        harness.publish_for(2.0, until=lambda: len(harness.chunks) >= 2)  # inference running
        assert len(harness.chunks) >= 2
        taken.clear()
        published = 0
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            harness.publish()
            published += 2
            time.sleep(0.02)
        time.sleep(0.3)
        assert len(taken) >= 0.6 * published, (len(taken), published)
    finally:
        harness.executor.shutdown()
        harness.thread.join(timeout=5)
        node.destroy_node()
        harness.probe.destroy_node()
        sys.setswitchinterval(before)


def test_rtc_conditions_each_chunk_on_the_last_one_and_falls_back_when_late(
        tmp_path, embodiment, ros):  # fmt: skip
    """strategy rtc: the rows the executor runs during the inference are the last chunk's; a
    delay past the horizon samples without a prefix and is counted."""
    from action_diffusion_policy.types import Observation

    slots = [int(s) for s in embodiment.action_slots]
    ckpt = make_checkpoint(tmp_path / "ckpt", slots, slots)
    node = policy_node(ckpt, strategy="rtc")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        spec = node.spec
        mask = np.zeros(128, bool)
        mask[spec.state_slots] = True
        obs = Observation({"cam_high": np.zeros((1, 24, 32, 3), np.uint8)},
                          np.zeros((1, 128), np.float32), mask)  # fmt: skip
        step = 1.0 / spec.control_frequency
        last = np.linspace(-0.5, 0.5, spec.horizon * len(slots), dtype=np.float32).reshape(
            spec.horizon, len(slots))  # fmt: skip
        node._last_chunk = (10.0, step, last)
        node._latency_estimate = 2.5 * step  # -> a delay of 3 steps
        chunk = node._predict(obs, 10.0 + 2 * step)  # observed two steps after the last one
        np.testing.assert_allclose(chunk[:3], last[2:5], atol=1e-4)
        assert node.counters["rtc_chunks"] == 1 and node._rtc_delay == 3
        node._latency_estimate = 20 * step  # longer than the chunk: no prefix to keep
        node._predict(obs, 10.0 + 2 * step)
        assert node.counters["rtc_fallbacks"] == 1
    finally:
        node.destroy_node()
    bad = policy_node(ckpt, strategy="ensemble")
    try:
        assert bad.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "parameter strategy='ensemble'" in bad.configure_error
    finally:
        bad.destroy_node()
