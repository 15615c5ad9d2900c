"""Every node, as its own process, stops on SIGINT and SIGTERM within 2 s, whatever /clock does.

At the end of a bringup every node gets the signal at once, so the sim's /clock stops with it.
Each round starts all the nodes at once (as a launch file does), each in a DDS domain of its own
with a peer feeding it what it needs on sim time (/clock, joint states, images, chunks, episode
status), waits until each one works (commands, chunks, states, a bag), stops the clock (or
keeps it and the inputs going), signals them all and times their exits. The sim and the bag
player are their own clocks. A clean stop logs no ERROR (the policy node's "publisher's context
is invalid") and no traceback, and nothing is published after the signal is handled.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from action_diffusion_msgs.msg import ActionChunk, EpisodeStatus, UnifiedState
from action_diffusion_policy.runtime import conversions as cv
from action_diffusion_policy.testing.node_process import start_node

pytestmark = pytest.mark.ros

EXIT_LIMIT_S = 2.0  # the nodes promise 1 s; the rest is this busy machine's slack
QUIET_AFTER_SIGNAL_S = 0.5  # nothing published later than this after the signal
STARTUP_LIMIT_S = 240.0  # ~15 s idle; a niced run beside a training takes minutes to import torch
JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
          "left_finger", "right_finger"]  # fmt: skip
HOME = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.03, -0.03]
ARMS = ("left", "right")
COMMAND_TOPICS = tuple(f"/follower_{a}/commands/joint_positions" for a in ARMS)
SAMPLE_BAG = (
    Path(__file__).resolve().parents[2]
    / "action_diffusion_policy" / "test" / "data" / "aloha_sim_transfer_cube"
)  # fmt: skip


@dataclass
class Case:
    module: str
    params: dict
    feeds: tuple[str, ...] = ()  # what the peer publishes on sim time
    outputs: tuple[tuple[str, type], ...] = ()  # what the node publishes (counted)
    ready: str = "outputs"  # "outputs": >= 3 messages; "bag": a bag directory appeared
    extra: dict = field(default_factory=dict)


def cases(checkpoint: Path, bag_dir: Path) -> dict[str, Case]:
    sim = {"use_sim_time": True}
    return {
        "policy_node": Case(
            "action_diffusion_policy.nodes.policy_node",
            {
                **sim,
                "checkpoint": checkpoint,
                "embodiment": "aloha_sim",
                "state_source": "joint_states",
                "torch_threads": 1,
                "inference_path": "fp32",
            },
            feeds=("clock", "joint_states", "images"),
            outputs=(("/policy/action_chunk", ActionChunk),),
        ),
        "action_executor": Case(
            "action_diffusion_policy.nodes.action_executor",
            {**sim, "embodiment": "aloha_sim"},
            feeds=("clock", "joint_states", "chunks"),
            outputs=tuple((t, Float64MultiArray) for t in COMMAND_TOPICS),
        ),
        "unified_state_node": Case(
            "unified_action_space.nodes.unified_state_node",
            {**sim, "embodiment": "aloha_sim", "fk": False},
            feeds=("clock", "joint_states"),
            outputs=(("/unified_state", UnifiedState),),
        ),
        "scripted_expert_node": Case(
            "aloha_sim.nodes.scripted_expert_node",
            sim,
            feeds=("clock", "joint_states", "status"),
            outputs=tuple((t, Float64MultiArray) for t in COMMAND_TOPICS),
        ),
        "recorder_node": Case(
            "action_diffusion_policy.nodes.recorder_node",
            {**sim, "embodiment": "aloha_sim", "output_dir": bag_dir, "auto_episode": True},
            feeds=("clock", "joint_states", "status"),
            ready="bag",
            extra={"bag_dir": bag_dir},
        ),
        "sim_node": Case(  # the clock source itself, on the wall clock as in the bringup
            "aloha_sim.nodes.sim_node",
            {"camera_rate": 0.0},
            outputs=(("/clock", Clock),),
        ),
        "bag_player": Case(
            "action_diffusion_policy.nodes.bag_player",
            {**sim, "bag": SAMPLE_BAG, "loop": True, "start_delay": 0.0},
            outputs=(("/clock", Clock),),
        ),
    }


class Peer:
    """The rest of the robot around one node, in that node's own DDS domain."""

    def __init__(self, domain: int, case: Case):
        self.case = case
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = Node("shutdown_peer", context=self.context)
        self.received: list[float] = []  # monotonic arrival times of the node's outputs
        self.feeding = threading.Event()
        self.feeding.set()
        self.sim_ns = 100_000_000_000
        self.step = 0
        pub = self.node.create_publisher
        self.pubs = {
            "clock": pub(Clock, "/clock", 10),
            "images": pub(Image, "/cameras/cam_high/image_raw", 10),
            "chunks": pub(ActionChunk, "/policy/action_chunk", 10),
            "status": pub(EpisodeStatus, "/sim/episode_status", 10),
            **{arm: pub(JointState, f"/follower_{arm}/joint_states", 10) for arm in ARMS},
        }
        for topic, msg_type in case.outputs:
            self.node.create_subscription(
                msg_type, topic, lambda _msg: self.received.append(time.monotonic()), 10
            )
        self.image = cv.rgb_to_image_msg(np.zeros((24, 32, 3), np.uint8), Image)
        if case.feeds:
            self.node.create_timer(0.02, self._tick)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _tick(self) -> None:
        if not self.feeding.is_set():
            return
        self.sim_ns += 20_000_000
        self.step += 1
        stamp = ns_stamp(self.sim_ns)
        feeds = self.case.feeds
        if "clock" in feeds:
            self.pubs["clock"].publish(Clock(clock=stamp))
        if "joint_states" in feeds:
            for arm in ARMS:
                msg = JointState(name=JOINTS, position=HOME, velocity=[0.0] * 8)
                msg.header.stamp = stamp
                self.pubs[arm].publish(msg)
        if "images" in feeds:
            self.image.header.stamp = stamp
            self.pubs["images"].publish(self.image)
        if "chunks" in feeds and self.step % 5 == 0:
            actions = np.tile(np.asarray(HOME[:7] * 2, np.float32), (50, 1))
            slots = np.array([0, 1, 2, 3, 4, 5, 10, 50, 51, 52, 53, 54, 55, 60])
            chunk = cv.ChunkArrays(self.sim_ns * 1e-9, 0.02, slots, actions, "test")
            self.pubs["chunks"].publish(cv.chunk_to_msg(chunk, ActionChunk))
        if "status" in feeds:
            msg = EpisodeStatus(task="transfer_cube", seed=1, step=self.step, max_reward=4,
                                object_poses=[0.1, 0.5, 0.05, 1.0, 0.0, 0.0, 0.0])  # fmt: skip
            msg.header.stamp = stamp
            self.pubs["status"].publish(msg)

    def is_ready(self) -> bool:
        if self.case.ready == "bag":
            return any(self.case.extra["bag_dir"].glob("*/"))
        return len(self.received) >= 3

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)  # before the node it spins goes
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def ns_stamp(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny U-Net policy for aloha_sim with one 24x32 camera (cam_high), 2 sampler steps."""
    import torch

    from action_diffusion_policy.checkpoint import save_checkpoint
    from action_diffusion_policy.config import PolicyConfig
    from action_diffusion_policy.policy import ActionChunkPolicy

    torch.manual_seed(0)
    slots = [0, 1, 2, 3, 4, 5, 10, 50, 51, 52, 53, 54, 55, 60]
    config = PolicyConfig(
        backbone="unet", size="tiny", horizon=8, n_obs_steps=1, camera_names=["cam_high"],
        image_size=(24, 32), state_slots=slots, action_slots=slots, control_frequency=50.0,
        embodiments=["aloha_sim"], num_inference_steps=2,
    )  # fmt: skip
    return save_checkpoint(ActionChunkPolicy(config), tmp_path_factory.mktemp("ckpt") / "tiny")


def run_round(checkpoint: Path, tmp_path: Path, signum: int, clock_stops: bool) -> None:
    """Start every node, wait until each works, signal them all at once, check the exits."""
    all_cases = cases(checkpoint, tmp_path / "bags")
    domains = random.Random(os.getpid() + time.monotonic_ns()).sample(range(110, 200), 7)
    procs, peers, logs = {}, {}, {}
    env_domain = os.environ.get("ROS_DOMAIN_ID")
    try:
        for (name, case), domain in zip(all_cases.items(), domains):
            peers[name] = Peer(domain, case)
            logs[name] = tmp_path / f"{name}.log"
            os.environ["ROS_DOMAIN_ID"] = str(domain)  # the child's domain
            procs[name] = start_node(case.module, case.params, logs[name])
        if env_domain is not None:
            os.environ["ROS_DOMAIN_ID"] = env_domain
        end = time.monotonic() + STARTUP_LIMIT_S
        while time.monotonic() < end and not all(p.is_ready() for p in peers.values()):
            dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
            assert not dead, f"exited before working: {dead}\n" + tails(logs, dead)
            time.sleep(0.1)
        waiting = [n for n, p in peers.items() if not p.is_ready()]
        assert not waiting, f"never worked: {waiting}\n" + tails(logs, waiting)

        if clock_stops:  # the sim stopped: no /clock, no inputs, before the signal
            for peer in peers.values():
                peer.feeding.clear()
            time.sleep(0.3)
        sent = time.monotonic()
        for proc in procs.values():
            proc.send_signal(signum)
        exits = {}
        while len(exits) < len(procs) and time.monotonic() - sent < 3 * EXIT_LIMIT_S:
            for name, proc in procs.items():
                if name not in exits and proc.poll() is not None:
                    exits[name] = time.monotonic() - sent
            time.sleep(0.005)
        for peer in peers.values():
            peer.feeding.clear()
        time.sleep(0.1)  # let anything still in flight arrive

        what = f"{signal.Signals(signum).name}, clock {'stopped' if clock_stops else 'running'}"
        times = {n: round(t, 3) for n, t in exits.items()}
        print(f"{what}: exit after {times}")  # shown with -s
        slow = {n: round(exits.get(n, float("inf")), 2) for n in procs
                if exits.get(n, float("inf")) > EXIT_LIMIT_S}  # fmt: skip
        assert not slow, f"{what}: not gone within {EXIT_LIMIT_S} s: {slow}\n" + tails(logs, slow)
        codes = {n: p.returncode for n, p in procs.items() if p.returncode != 0}
        assert not codes, f"{what}: exit codes {codes}\n" + tails(logs, codes)
        for name, log in logs.items():
            text = log.read_text()
            assert "[ERROR]" not in text and "Traceback" not in text, f"{what}: {name}\n{text}"
            late = [t - sent for t in peers[name].received if t - sent > QUIET_AFTER_SIGNAL_S]
            assert not late, f"{what}: {name} published {len(late)} messages after the signal"
        bags = list((tmp_path / "bags").glob("*/metadata.yaml"))
        assert bags, "the recorder did not close its bag on the signal"
    finally:
        if env_domain is not None:
            os.environ["ROS_DOMAIN_ID"] = env_domain
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for peer in peers.values():
            peer.close()


def tails(logs: dict[str, Path], names) -> str:
    return "\n".join(f"--- {n}:\n{logs[n].read_text()[-1500:]}" for n in names)


@pytest.mark.parametrize(
    ("signum", "clock_stops"), [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["sigint-clock-stopped", "sigterm-clock-running"],
)  # fmt: skip
def test_every_node_stops_within_2_s(checkpoint, tmp_path, signum, clock_stops):
    run_round(checkpoint, tmp_path, signum, clock_stops)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
@pytest.mark.parametrize("repeat", range(4))
def test_every_node_stops_within_2_s_repeated(checkpoint, tmp_path, signum, repeat):
    """Four more rounds per signal (five with the one above), alternating the clock: a hang
    one run in five shows up here."""
    run_round(checkpoint, tmp_path, signum, clock_stops=repeat % 2 == 0)
