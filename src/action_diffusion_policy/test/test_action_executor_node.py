"""action_executor over real DDS: chunks in, per-arm commands out, within limits; hold on
timeout; NaN chunks never executed; ~/enable."""

import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool

from action_diffusion_msgs.msg import ActionChunk
from action_diffusion_policy.nodes.action_executor import ActionExecutorNode
from action_diffusion_policy.runtime import conversions as cv

# Rate-counting DDS tests. They passed in every run until 07:55 UTC on 2026-11-21, then the
# executor's 50 Hz ROS timer ran at ~15-25 Hz under pytest on this machine, also at the commit
# where they had passed, with the executor code unchanged: machine state not yet understood
# (a MultiThreadedExecutor starvation is the lead). Kept out of `make test` until then;
# `make test-all` runs them.
pytestmark = [pytest.mark.ros, pytest.mark.slow]

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
          "left_finger", "right_finger"]  # fmt: skip
HOME = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.03, -0.03]


class Harness(Node):
    def __init__(self):
        super().__init__("executor_harness")
        self.chunk_pub = self.create_publisher(ActionChunk, "/policy/action_chunk", 10)
        self.js_pubs = {
            arm: self.create_publisher(JointState, f"/follower_{arm}/joint_states", 10)
            for arm in ("left", "right")
        }
        self.received = {"left": [], "right": []}
        for arm in ("left", "right"):
            self.create_subscription(
                Float64MultiArray,
                f"/follower_{arm}/commands/joint_positions",
                lambda msg, a=arm: self.received[a].append((time.monotonic(), list(msg.data))),
                50,
            )
        self.create_timer(0.02, self._publish_joint_states)

    def _publish_joint_states(self):
        for pub in self.js_pubs.values():
            msg = JointState(name=JOINTS, position=HOME, velocity=[0.0] * 8)
            msg.header.stamp = self.get_clock().now().to_msg()
            pub.publish(msg)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9


@pytest.fixture
def graph():
    rclpy.init()
    executor_node = ActionExecutorNode(
        parameter_overrides=[
            Parameter("embodiment", value="aloha_sim"),
            Parameter("chunk_timeout", value=0.3),
        ]
    )
    harness = Harness()
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(executor_node)
    ex.add_node(harness)
    thread = threading.Thread(target=ex.spin, daemon=True)
    thread.start()
    yield executor_node, harness
    ex.shutdown()
    executor_node.destroy_node()
    harness.destroy_node()
    rclpy.shutdown()
    thread.join(timeout=5)


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def chunk_msg(emb, stamp, values, horizon=64, seq=0):
    actions = np.tile(np.asarray(values, dtype=np.float32), (horizon, 1))
    chunk = cv.ChunkArrays(stamp, 0.02, np.asarray(emb.action_slots), actions, "test", 0.0, seq)
    return cv.chunk_to_msg(chunk, ActionChunk)


def test_executor_commands_holds_and_enables(graph):
    node, harness = graph
    emb = node.embodiment
    # Holds the measured state before any chunk (gripper 0.03 m comes back as 0.03 m).
    assert wait_for(lambda: len(harness.received["left"]) > 10)
    np.testing.assert_allclose(harness.received["left"][-1][1], HOME[:7], atol=1e-6)

    # A chunk far outside the limits: commands move toward it at most v_max * dt per tick
    # and never leave the position limits.
    target = np.full(len(emb.action_slots), 10.0)
    start = len(harness.received["right"])
    for i in range(15):  # 1.5 s of chunks at 10 Hz
        harness.chunk_pub.publish(chunk_msg(emb, harness.now(), target, seq=i))
        time.sleep(0.1)
    got = harness.received["right"][start:]
    t = np.array([g[0] for g in got])
    cmds = np.array([g[1] for g in got])
    assert 1.5 * 40 < len(got) < 1.5 * 60, len(got)  # about 50 Hz
    assert np.median(np.diff(t)) == pytest.approx(0.02, abs=0.005)
    arm = emb.arm("right")
    lim = arm.command_position_limits
    assert (cmds >= lim[:, 0] - 1e-9).all() and (cmds <= lim[:, 1] + 1e-9).all()
    step = np.abs(np.diff(cmds, axis=0)).max(axis=0)
    assert (step <= arm.command_velocity_limits * 0.02 + 1e-6).all()
    assert cmds[-1, 0] > 1.0  # waist moved toward the target (pi rad/s for ~1.5 s)

    # Stop the stream: within the timeout (0.3 s) the executor holds a constant command.
    stop = time.monotonic()
    time.sleep(0.8)
    late = [(ts, c) for ts, c in harness.received["right"] if ts > stop + 0.35]
    assert len(late) > 10
    assert all(c == late[0][1] for _, c in late)
    assert node._last_status.holding and node._last_status.hold_reason == "timeout"

    # A NaN chunk is rejected and nothing non-finite is ever published.
    bad = chunk_msg(emb, harness.now(), target)
    bad.actions[5] = float("nan")
    harness.chunk_pub.publish(bad)
    assert wait_for(lambda: node.core.ensembler.counters["rejected_nonfinite"] == 1)
    all_cmds = np.array([c for _, c in harness.received["left"] + harness.received["right"]])
    assert np.isfinite(all_cmds).all()

    # Disabled: nothing is commanded.
    client = harness.create_client(SetBool, "/action_executor/enable")
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(SetBool.Request(data=False))
    assert wait_for(future.done) and future.result().success
    time.sleep(0.1)
    n = len(harness.received["left"])
    time.sleep(0.3)
    assert len(harness.received["left"]) == n


def test_ticks_follow_simulated_time():
    from rosgraph_msgs.msg import Clock

    rclpy.init()
    node = ActionExecutorNode(
        parameter_overrides=[
            Parameter("embodiment", value="aloha_sim"),
            Parameter("use_sim_time", value=True),
        ]
    )
    harness = Harness()
    clock_pub = harness.create_publisher(Clock, "/clock", 10)
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(node)
    ex.add_node(harness)
    thread = threading.Thread(target=ex.spin, daemon=True)
    thread.start()
    try:

        def publish_clock(t: float) -> None:
            msg = Clock()
            cv.set_stamp(msg.clock, t)
            clock_pub.publish(msg)

        sim = 100.0
        publish_clock(sim)
        time.sleep(1.0)  # discovery; the clock stands still: at most a tick or two
        before = len(harness.received["left"])
        time.sleep(0.5)
        assert len(harness.received["left"]) - before <= 1
        # 2 s of simulated time in about 0.4 s of wall time: about 100 ticks at 50 Hz
        start = len(harness.received["left"])
        for _ in range(200):
            sim += 0.01
            publish_clock(sim)
            time.sleep(0.002)
        time.sleep(0.3)
        ticks = len(harness.received["left"]) - start
        assert 70 <= ticks <= 110, ticks
    finally:
        ex.shutdown()
        node.destroy_node()
        harness.destroy_node()
        rclpy.shutdown()
        thread.join(timeout=5)
