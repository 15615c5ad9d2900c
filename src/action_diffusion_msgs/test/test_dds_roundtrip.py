"""Every custom message and service makes a real round trip over DDS between two rclpy nodes."""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy  # noqa: E402

from action_diffusion_msgs.msg import ActionChunk, EpisodeStatus, UnifiedState  # noqa: E402
from action_diffusion_msgs.srv import (  # noqa: E402
    ResetEpisode,
    SetInstruction,
    StartRecording,
)

pytestmark = pytest.mark.ros

RELIABLE = QoSProfile(
    depth=10,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.VOLATILE,
)


@pytest.fixture(scope="module")
def nodes():
    rclpy.init()
    sender = rclpy.create_node("roundtrip_sender")
    receiver = rclpy.create_node("roundtrip_receiver")
    executor = SingleThreadedExecutor()
    executor.add_node(sender)
    executor.add_node(receiver)
    yield sender, receiver, executor
    executor.shutdown()
    sender.destroy_node()
    receiver.destroy_node()
    rclpy.shutdown()


def spin_until(executor, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def roundtrip(nodes, msg_type, topic, msg):
    sender, receiver, executor = nodes
    got = []
    sub = receiver.create_subscription(msg_type, topic, got.append, RELIABLE)
    pub = sender.create_publisher(msg_type, topic, RELIABLE)
    # Publish until discovery completes and one copy arrives.
    deadline = time.monotonic() + 10.0
    while not got and time.monotonic() < deadline:
        pub.publish(msg)
        spin_until(executor, lambda: bool(got), timeout=0.2)
    receiver.destroy_subscription(sub)
    sender.destroy_publisher(pub)
    assert got, f"no {msg_type.__name__} arrived on {topic} over DDS"
    return got[0]


def test_action_chunk_roundtrip(nodes):
    horizon, slots = 4, [0, 1, 2, 10, 50, 60]
    actions = np.arange(horizon * len(slots), dtype=np.float32) * 0.25 - 1.0
    msg = ActionChunk()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345_000_000
    msg.step_period = 0.02
    msg.horizon = horizon
    msg.slot_indices = slots
    msg.actions = actions.tolist()
    msg.checkpoint_id = "sha256:abc123"
    msg.inference_latency = 0.0421
    msg.sequence = 7
    out = roundtrip(nodes, ActionChunk, "/test/action_chunk", msg)
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (12, 345_000_000)
    assert out.step_period == pytest.approx(0.02)
    assert out.horizon == horizon
    assert list(out.slot_indices) == slots
    np.testing.assert_array_equal(np.asarray(out.actions, dtype=np.float32), actions)
    assert out.checkpoint_id == "sha256:abc123"
    assert out.inference_latency == pytest.approx(0.0421)
    assert out.sequence == 7


def test_unified_state_roundtrip(nodes):
    rng = np.random.default_rng(0)
    values = rng.normal(size=128).astype(np.float32)
    mask = rng.random(128) > 0.5
    msg = UnifiedState()
    msg.embodiment = "aloha"
    msg.control_frequency = 50.0
    msg.values = values
    msg.mask = mask.tolist()
    out = roundtrip(nodes, UnifiedState, "/test/unified_state", msg)
    assert out.embodiment == "aloha"
    assert out.control_frequency == 50.0
    np.testing.assert_array_equal(np.asarray(out.values), values)
    np.testing.assert_array_equal(np.asarray(out.mask, dtype=bool), mask)


def test_episode_status_roundtrip(nodes):
    msg = EpisodeStatus()
    msg.task = "transfer_cube"
    msg.seed = -3
    msg.step = 399
    msg.reward = 4
    msg.max_reward = 4
    msg.success = True
    msg.object_poses = [0.1, 0.5, 0.05, 1.0, 0.0, 0.0, 0.0]
    out = roundtrip(nodes, EpisodeStatus, "/test/episode_status", msg)
    assert (out.task, out.seed, out.step, out.reward, out.max_reward, out.success) == (
        "transfer_cube",
        -3,
        399,
        4,
        4,
        True,
    )
    assert list(out.object_poses) == [0.1, 0.5, 0.05, 1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("srv_type", "fill", "answer", "check"),
    [
        (
            ResetEpisode,
            lambda r: (setattr(r, "seed", 42), setattr(r, "use_seed", True)),
            lambda req, res: (
                setattr(res, "success", req.use_seed),
                setattr(res, "seed", req.seed + 1),
            ),
            lambda res: res.success and res.seed == 43,
        ),
        (
            SetInstruction,
            lambda r: setattr(r, "instruction", "hand the cube over"),
            lambda req, res: (
                setattr(res, "success", True),
                setattr(res, "message", req.instruction.upper()),
            ),
            lambda res: res.success and res.message == "HAND THE CUBE OVER",
        ),
        (
            StartRecording,
            lambda r: (setattr(r, "task", "insertion"), setattr(r, "notes", "n")),
            lambda req, res: (
                setattr(res, "success", True),
                setattr(res, "bag_path", f"/bags/{req.task}_0"),
            ),
            lambda res: res.success and res.bag_path == "/bags/insertion_0",
        ),
    ],
)
def test_service_roundtrip(nodes, srv_type, fill, answer, check):
    server_node, client_node, executor = nodes
    name = f"/test/{srv_type.__name__.lower()}"

    def handle(req, res):
        answer(req, res)
        return res

    server = server_node.create_service(srv_type, name, handle)
    client = client_node.create_client(srv_type, name)
    assert spin_until(executor, lambda: client.service_is_ready(), timeout=10.0) or (
        client.wait_for_service(timeout_sec=5.0)
    ), f"{name} never became available"
    req = srv_type.Request()
    fill(req)
    future = client.call_async(req)
    assert spin_until(executor, future.done, timeout=10.0), f"{name} did not answer"
    assert check(future.result())
    client_node.destroy_client(client)
    server_node.destroy_service(server)
