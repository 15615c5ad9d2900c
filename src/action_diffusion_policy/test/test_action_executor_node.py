"""action_executor over real DDS: chunks in, per-arm commands out, within limits; hold on
timeout; NaN chunks never executed; ~/enable."""

import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from action_diffusion_msgs.msg import ActionChunk
from action_diffusion_policy.runtime import conversions as cv
from action_diffusion_policy.testing.node_process import start_node, stop_node, wait_until
from unified_action_space import load_embodiment

# The executor runs in its own process, as on a robot. Its rate is what it measures of its own
# ticks (/diagnostics): counted here, it is the harness's throughput, which on a busy 2-core
# machine fell to 15-25 messages/s while the node kept 50 Hz.
pytestmark = pytest.mark.ros

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
          "left_finger", "right_finger"]  # fmt: skip
HOME = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.03, -0.03]


class Harness(Node):
    """What the robot and the policy node do around the executor, and what it sends back."""

    def __init__(self, sim_time: bool = False):
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
                100,
            )
        self.diagnostics: dict[str, str] = {}
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        if not sim_time:
            self.create_timer(0.02, self._publish_joint_states)

    def _publish_joint_states(self):
        for pub in self.js_pubs.values():
            msg = JointState(name=JOINTS, position=HOME, velocity=[0.0] * 8)
            msg.header.stamp = self.get_clock().now().to_msg()
            pub.publish(msg)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.startswith("action_executor"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def call(self, srv_type, name, request):
        client = self.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=10.0), f"{name} not offered"
        future = client.call_async(request)
        assert wait_until(future.done), f"{name} did not answer"
        return future.result()


@pytest.fixture
def harness_factory(tmp_path):
    """Start the executor process and a harness spun in a thread; stop both afterwards."""
    started = []

    def make(sim_time=False, **params):
        proc = start_node(
            "action_diffusion_policy.nodes.action_executor",
            {"embodiment": "aloha_sim", **params},
            tmp_path / "executor.log",
        )
        rclpy.init()
        harness = Harness(sim_time=sim_time)
        spinner = SingleThreadedExecutor()
        spinner.add_node(harness)
        thread = threading.Thread(target=spinner.spin, daemon=True)
        thread.start()
        started.append((proc, harness, spinner, thread))
        return proc, harness

    yield make
    for proc, harness, spinner, thread in started:
        spinner.shutdown()
        harness.destroy_node()
        rclpy.shutdown()
        thread.join(timeout=5)
        stop_node(proc)




def chunk_msg(emb, stamp, values, horizon=64, seq=0):
    actions = np.tile(np.asarray(values, dtype=np.float32), (horizon, 1))
    chunk = cv.ChunkArrays(stamp, 0.02, np.asarray(emb.action_slots), actions, "test", 0.0, seq)
    return cv.chunk_to_msg(chunk, ActionChunk)


def test_executor_commands_holds_resets_and_enables(harness_factory, tmp_path):
    proc, harness = harness_factory(chunk_timeout=0.3)
    emb = load_embodiment("aloha_sim", kinematics=False)
    log = tmp_path / "executor.log"
    # Holds the measured state before any chunk (gripper 0.03 m comes back as 0.03 m).
    started = wait_until(lambda: len(harness.received["left"]) > 10, timeout=30.0)
    assert started, log.read_text()[-2000:]
    np.testing.assert_allclose(harness.received["left"][-1][1], HOME[:7], atol=1e-6)

    # A chunk far outside the limits: commands move toward it at most v_max * dt per tick
    # and never leave the position limits.
    target = np.full(len(emb.action_slots), 10.0)
    start = len(harness.received["right"])
    for i in range(15):  # 1.5 s of chunks at 10 Hz
        # 5 s chunks: "timeout" (not "no_chunks") is the hold reason long after the stream
        # stops, whatever moment the 1 Hz diagnostics land.
        harness.chunk_pub.publish(chunk_msg(emb, harness.now(), target, horizon=250, seq=i))
        time.sleep(0.1)
    got = harness.received["right"][start:]
    t = np.array([g[0] for g in got])
    cmds = np.array([g[1] for g in got])
    # 50 Hz as the node measures its own ticks (its /diagnostics, a 5 s window); what arrived
    # here in 1.5 s never exceeds that, and a busy harness may only fall a little behind.
    assert wait_until(lambda: "rate_hz" in harness.diagnostics, timeout=3.0)
    assert 45.0 <= float(harness.diagnostics["rate_hz"]) <= 55.0, harness.diagnostics
    assert 0.6 * 75 <= len(got) <= 1.1 * 75, (len(got), log.read_text()[-2000:])
    assert t[-1] - t[0] > 1.2
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
    assert wait_until(lambda: harness.diagnostics.get("hold_reason") == "timeout", timeout=3.0)

    # A NaN chunk is rejected and nothing non-finite is ever published.
    bad = chunk_msg(emb, harness.now(), target)
    bad.actions[5] = float("nan")
    harness.chunk_pub.publish(bad)
    assert wait_until(lambda: harness.diagnostics.get("chunks_rejected_nonfinite") == "1", 3.0)
    all_cmds = np.array([c for _, c in harness.received["left"] + harness.received["right"]])
    assert np.isfinite(all_cmds).all()

    # A chunk stamped 30 s ahead of the executor's clock (clock skew) is refused and counted,
    # not kept to start moving the arms 30 s from now.
    harness.chunk_pub.publish(chunk_msg(emb, harness.now() + 30.0, target, seq=50))
    assert wait_until(lambda: harness.diagnostics.get("chunks_rejected_future") == "1", 3.0)

    # Reset (new episode): the held far-away command is dropped; the executor restarts at the
    # measured arms (HOME) at once instead of walking back, and refuses a chunk observed
    # before the reset.
    before_reset = harness.now()
    assert harness.call(Trigger, "/action_executor/reset", Trigger.Request()).success
    mark = time.monotonic()
    harness.chunk_pub.publish(chunk_msg(emb, before_reset, target, seq=99))
    assert wait_until(lambda: any(ts > mark for ts, _ in harness.received["right"]), 3.0)
    time.sleep(0.2)
    after = [c for ts, c in harness.received["right"] if ts > mark]
    np.testing.assert_allclose(after[0], HOME[:7], atol=1e-6)
    np.testing.assert_allclose(after[-1], HOME[:7], atol=1e-6)
    assert wait_until(lambda: harness.diagnostics.get("chunks_rejected_before_reset") == "1", 3.0)

    # Disabled: nothing is commanded.
    assert harness.call(SetBool, "/action_executor/enable", SetBool.Request(data=False)).success
    time.sleep(0.1)
    n = len(harness.received["left"])
    time.sleep(0.3)
    assert len(harness.received["left"]) == n
    assert proc.poll() is None, log.read_text()[-2000:]


def test_ticks_follow_simulated_time(harness_factory, tmp_path):
    from rosgraph_msgs.msg import Clock

    proc, harness = harness_factory(sim_time=True, use_sim_time=True)
    clock_pub = harness.create_publisher(Clock, "/clock", 10)

    def publish_clock(t: float) -> None:
        msg = Clock()
        cv.set_stamp(msg.clock, t)
        clock_pub.publish(msg)
        for pub in harness.js_pubs.values():  # the robot's state, stamped in sim time
            js = JointState(name=JOINTS, position=HOME, velocity=[0.0] * 8)
            cv.set_stamp(js.header.stamp, t)
            pub.publish(js)

    subscribed = wait_until(
        lambda: harness.count_subscribers("/clock") > 0
        and harness.count_subscribers("/follower_left/joint_states") > 0,
        timeout=30.0,
    )
    assert subscribed, (tmp_path / "executor.log").read_text()[-2000:]
    sim = 100.0
    # The clock stands still (the state keeps coming): at most a tick or two.
    for i in range(50):
        publish_clock(sim)
        if i == 25:
            before = len(harness.received["left"])
        time.sleep(0.02)
    assert len(harness.received["left"]) - before <= 1
    # 2 s of simulated time in about 0.4 s of wall time: about 100 ticks at 50 Hz.
    start = len(harness.received["left"])
    for _ in range(200):
        sim += 0.01
        publish_clock(sim)
        time.sleep(0.002)
    time.sleep(0.3)
    ticks = len(harness.received["left"]) - start
    assert 70 <= ticks <= 110, (ticks, (tmp_path / "executor.log").read_text()[-2000:])
    assert proc.poll() is None


def test_real_robot_safety_disabled_start_ramp_deadman_and_estop(harness_factory, tmp_path):
    """What real.yaml turns on, over DDS: nothing before ~/enable; a slow first motion; the
    deadman holds the arm; the e-stop latches until released and enabled again."""
    from std_msgs.msg import Bool

    proc, harness = harness_factory(enabled_on_start=False, start_ramp_s=1.0,
                                    start_speed_fraction=0.1, heartbeat_timeout=0.3,
                                    chunk_timeout=5.0)  # fmt: skip
    emb = load_embodiment("aloha_sim", kinematics=False)
    log = tmp_path / "executor.log"
    deadman = harness.create_publisher(Bool, "/deadman", 10)
    estop = harness.create_publisher(Bool, "/estop", 10)
    assert wait_until(lambda: harness.diagnostics.get("enabled") == "False", 30.0), \
        log.read_text()[-2000:]
    time.sleep(0.5)
    assert harness.received["right"] == []  # disabled on start: not one command

    target = np.full(len(emb.action_slots), 10.0)
    alive = threading.Event()

    def feed():  # the policy's chunks, and the deadman pressed while `alive`
        i = 0
        while not stop_feed.is_set():
            harness.chunk_pub.publish(chunk_msg(emb, harness.now(), target, seq=i))
            if alive.is_set():
                deadman.publish(Bool(data=True))
            i += 1
            time.sleep(0.05)

    stop_feed = threading.Event()
    feeder = threading.Thread(target=feed, daemon=True)
    alive.set()
    feeder.start()
    try:
        reply = harness.call(SetBool, "/action_executor/enable", SetBool.Request(data=True))
        assert reply.success and "10%" in reply.message, reply.message
        assert wait_until(lambda: len(harness.received["right"]) > 75, 10.0)
        waist = np.array([c[0] for _, c in harness.received["right"]])
        steps = np.diff(waist)
        v_max = emb.arm("right").command_velocity_limits[0] * 0.02
        # The slow start: 10 % of the limit, +0.9 % per 20 ms tick (the ramp runs on the
        # node's clock, so a late tick may see a little more); all of it after the 1 s ramp.
        assert steps[0] <= 0.2 * v_max + 1e-6, steps[:5] / v_max
        assert steps[60:].max() >= 0.9 * v_max
        assert steps[:3].max() < 0.4 * steps[60:].max()

        alive.clear()  # the operator lets go of the deadman: the arm holds within 0.3 s
        let_go = time.monotonic()
        time.sleep(0.8)
        late = [c for ts, c in harness.received["right"] if ts > let_go + 0.45]
        assert len(late) > 5 and all(c == late[0] for c in late)
        assert wait_until(lambda: harness.diagnostics.get("hold_reason") == "heartbeat_lost", 3)

        alive.set()
        estop.publish(Bool(data=True))
        assert wait_until(lambda: harness.diagnostics.get("estopped") == "True", 3.0)
        n = len(harness.received["right"])
        time.sleep(0.3)
        assert len(harness.received["right"]) == n  # nothing at all while stopped
        refused = harness.call(SetBool, "/action_executor/enable", SetBool.Request(data=True))
        assert not refused.success and "/estop" in refused.message
        estop.publish(Bool(data=False))
        assert wait_until(lambda: harness.diagnostics.get("estopped") == "False", 3.0)
        time.sleep(0.3)
        assert len(harness.received["right"]) == n  # released, but still disabled
        assert harness.call(SetBool, "/action_executor/enable", SetBool.Request(data=True)).success
        assert wait_until(lambda: len(harness.received["right"]) > n + 10, 5.0)
    finally:
        stop_feed.set()
        feeder.join(timeout=2)
    assert proc.poll() is None, log.read_text()[-2000:]
