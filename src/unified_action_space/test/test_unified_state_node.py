"""unified_state_node over real DDS: JointStates in, UnifiedState out; NaN and missing arms."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from action_diffusion_msgs.msg import UnifiedState  # noqa: E402
from unified_action_space.conversions import (  # noqa: E402
    joint_state_to_msg,
    unified_state_from_msg,
)
from unified_action_space.nodes.unified_state_node import UnifiedStateNode  # noqa: E402

pytestmark = pytest.mark.ros

NAMES = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
         "left_finger", "right_finger"]  # fmt: skip
Q_LEFT = np.array([0.1, -0.5, 0.6, 0.0, 0.2, -0.1, 0.0381, -0.0381])
Q_RIGHT = np.array([-0.2, -0.4, 0.5, 0.1, 0.3, 0.2, 0.0250, -0.0250])


class Harness:
    """The node under test plus a peer node publishing JointStates and collecting outputs."""

    def __init__(self, parameters):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = UnifiedStateNode(
            context=self.context,
            parameter_overrides=[rclpy.parameter.Parameter(k, value=v) for k, v in parameters],
        )
        self.peer = Node("unified_state_test_peer", context=self.context)
        self.pubs = {
            side: self.peer.create_publisher(JointState, f"/follower_{side}/joint_states", 10)
            for side in ("left", "right")
        }
        self.states: list[UnifiedState] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.peer.create_subscription(UnifiedState, "/unified_state", self.states.append, 10)
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)

    def publish(self, side, q, stamp_ns, velocities=None):
        self.pubs[side].publish(joint_state_to_msg(NAMES, q, velocities, stamp_ns))

    def spin_until(self, predicate, timeout=5.0, publish=None):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if publish is not None:
                publish()
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return False

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def harness():
    h = Harness([("embodiment", "aloha_sim"), ("stale_timeout", 0.3),
                 ("diagnostics_period", 0.2)])  # fmt: skip
    yield h
    h.close()


def test_publishes_unified_state_with_newest_stamp(harness):
    emb = harness.node.embodiment

    def publish_both():
        harness.publish("left", Q_LEFT, 1_000_000_000, velocities=np.full(8, 0.5))
        harness.publish("right", Q_RIGHT, 2_500_000_000, velocities=np.full(8, 0.5))

    assert harness.spin_until(lambda: len(harness.states) >= 3, publish=publish_both)
    values, mask, name, freq, stamp = unified_state_from_msg(harness.states[-1])
    assert (name, freq) == ("aloha_sim", 50.0)
    assert stamp == 2_500_000_000  # the newest input stamp
    expected, expected_mask = emb.state_from_joint_states(
        {"left": (NAMES, Q_LEFT, np.full(8, 0.5)), "right": (NAMES, Q_RIGHT, np.full(8, 0.5))}
    )
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(values, expected, atol=1e-6)
    assert values[50] == pytest.approx(0.1) and values[10] != 0
    assert mask[30:39].all()  # FK filled the EEF slots


def test_nan_rejected_and_never_published(harness):
    q = Q_LEFT.copy()
    q[2] = np.nan

    def publish_bad():
        harness.publish("left", q, 1_000_000_000)
        harness.publish("right", Q_RIGHT, 1_000_000_000)

    assert harness.spin_until(lambda: harness.node.rejected >= 5, publish=publish_bad)
    assert harness.spin_until(
        lambda: any(
            s.level == DiagnosticStatus.ERROR and "elbow" in s.message
            for d in harness.diagnostics for s in d.status
        ),
        publish=publish_bad,
    )  # fmt: skip
    harness.spin_until(lambda: False, timeout=0.2)  # let anything in flight arrive
    assert harness.states == [] and harness.node.published == 0
    # A valid message afterwards is published again.
    assert harness.spin_until(
        lambda: len(harness.states) >= 1,
        publish=lambda: (harness.publish("left", Q_LEFT, 3), harness.publish("right", Q_RIGHT, 3)),
    )
    values, mask, *_ = unified_state_from_msg(harness.states[-1])
    assert np.isfinite(values).all() and mask[52]


def test_missing_arm_reported_and_not_published(harness):
    assert harness.spin_until(
        lambda: any(
            s.level == DiagnosticStatus.ERROR and s.name == "unified_state: right arm"
            and "/follower_right/joint_states" in s.message
            for d in harness.diagnostics for s in d.status
        ),
        publish=lambda: harness.publish("left", Q_LEFT, 1),
    )  # fmt: skip
    assert harness.states == []
    left = [s for d in harness.diagnostics for s in d.status if s.name.endswith("left arm")]
    assert left and left[-1].level == DiagnosticStatus.OK


def test_stale_arm_stops_publication(harness):
    both = lambda: (harness.publish("left", Q_LEFT, 1), harness.publish("right", Q_RIGHT, 1))  # noqa: E731
    assert harness.spin_until(lambda: len(harness.states) >= 2, publish=both)
    # Only the left arm keeps talking: after stale_timeout the right arm is reported stale.
    assert harness.spin_until(
        lambda: any(
            s.level == DiagnosticStatus.WARN and "stale" in s.message and "right" in s.name
            for d in harness.diagnostics for s in d.status
        ),
        publish=lambda: harness.publish("left", Q_LEFT, 2),
    )  # fmt: skip
    count = len(harness.states)
    left_only = lambda: harness.publish("left", Q_LEFT, 2)  # noqa: E731
    harness.spin_until(lambda: False, timeout=0.3, publish=left_only)
    assert len(harness.states) <= count + 1  # at most one already in flight


def test_console_entry_point_publishes(tmp_path):
    """main() as a separate process (real inter-process DDS), with a user config path."""
    context = rclpy.Context()
    rclpy.init(context=context)
    peer = Node("unified_state_entry_peer", context=context)
    states = []
    peer.create_subscription(UnifiedState, "/unified_state", states.append, 10)
    pubs = {s: peer.create_publisher(JointState, f"/follower_{s}/joint_states", 10)
            for s in ("left", "right")}  # fmt: skip
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(peer)
    proc = subprocess.Popen(
        [sys.executable, "-m", "unified_action_space.nodes.unified_state_node", "--ros-args",
         "-p", "embodiment:=aloha_sim", "-p", "fk:=false", "-p", "rate:=20"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and not states:
            for side, q in (("left", Q_LEFT), ("right", Q_RIGHT)):
                pubs[side].publish(joint_state_to_msg(NAMES, q, None, 42))
            executor.spin_once(timeout_sec=0.05)
        assert states, "no UnifiedState from the unified_state_node process"
        values, mask, *_ = unified_state_from_msg(states[-1])
        assert not mask[30:39].any()  # fk:=false
        assert values[51] == pytest.approx(-0.5)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode(errors="replace")
        executor.shutdown()
        peer.destroy_node()
        rclpy.shutdown(context=context)
    assert proc.returncode in (0, -15), out


def test_bad_embodiment_parameter_fails_with_known_names():
    proc = subprocess.run(
        [sys.executable, "-m", "unified_action_space.nodes.unified_state_node", "--ros-args",
         "-p", "embodiment:=nope"],
        env=dict(os.environ), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "unknown embodiment 'nope'" in proc.stderr and "aloha_sim" in proc.stderr


def test_publish_on_inputs_one_state_per_complete_step():
    h = Harness([("embodiment", "aloha_sim"), ("fk", False), ("publish_on", "inputs"),
                 ("stale_timeout", 5.0), ("diagnostics_period", 0.2)])  # fmt: skip
    try:
        step = 20_000_000
        # Left arm at step 1, right still at step 0: nothing yet (no mix of two steps).
        h.publish("left", Q_LEFT, 0)
        h.publish("right", Q_RIGHT, 0)
        assert h.spin_until(lambda: len(h.states) == 1)
        h.publish("left", Q_LEFT + 0.1, step)
        h.spin_until(lambda: False, timeout=0.3)
        assert len(h.states) == 1
        h.publish("right", Q_RIGHT + 0.1, step)
        assert h.spin_until(lambda: len(h.states) == 2)
        values, _, _, _, stamp = unified_state_from_msg(h.states[-1])
        assert stamp == step
        expected, _ = h.node.embodiment.state_from_joint_states(
            {"left": (NAMES, Q_LEFT + 0.1, None), "right": (NAMES, Q_RIGHT + 0.1, None)}, fk=False
        )
        np.testing.assert_allclose(values, expected, atol=1e-6)
        # A repeated step (stamps not advanced by 3/4 of a period) is not published again.
        h.publish("left", Q_LEFT, step + 1_000_000)
        h.publish("right", Q_RIGHT, step + 1_000_000)
        h.spin_until(lambda: False, timeout=0.3)
        assert len(h.states) == 2
        # Each complete next step is published once, as it completes.
        for k in range(2, 6):
            h.publish("left", Q_LEFT, k * step)
            h.publish("right", Q_RIGHT, k * step)
            assert h.spin_until(lambda k=k: len(h.states) == k + 1)
        stamps = [unified_state_from_msg(m)[4] for m in h.states]
        assert stamps == [0, step, 2 * step, 3 * step, 4 * step, 5 * step]
    finally:
        h.close()


def test_bad_publish_on_parameter_fails():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ValueError, match="publish_on='sometimes'"):
            UnifiedStateNode(
                context=context,
                parameter_overrides=[rclpy.parameter.Parameter("publish_on", value="sometimes")],
            )
    finally:
        rclpy.shutdown(context=context)
