"""Runtime benchmark: executor tick cost, tick-period jitter, end-to-end policy latency. JSON.

1. ``executor_tick``: per-tick cost of the executor's pure path (ensembler -> timeout/hold ->
   limiter -> unified-to-driver command mapping -> message build) for the aloha_sim embodiment
   (14 slots) at 50 Hz, with 64-step chunks arriving at 10 Hz (each 100 ms late, as from a
   policy that thinks for 100 ms). Target: mean <= 0.2 ms.
2. ``tick_jitter``: the action_executor node in its own process at 50, 200 and 500 Hz, fed
   chunks and joint states over DDS, with its tick thread (``tick_clock: thread``) and with an
   rclpy timer (``ros_timer``, the previous design), on an otherwise idle machine and while a
   policy node infers beside it (``beside_inference``). Two views: the node's own wake-up
   lateness against its deadlines (``node_tick``, from /diagnostics), and the inter-arrival of
   its commands at a subscriber in this process (``received``: the tick plus DDS delivery plus
   this process's scheduling) as p50/p99/max deviation from the period. Targets: node tick
   p99 <= 1 ms at 50 Hz idle, <= 2 ms beside inference; 500 Hz holds its rate.
3. ``end_to_end``: policy_node in its own process running the default small model (U-Net
   ``small``, DDIM 10 steps, 2 cameras at 96x128, 2 observation steps, horizon 64), fed 2 cameras
   at 30 Hz (480x640 rgb8, resized to 96x128; from a process of their own, as from a camera
   driver) and joint states at 50 Hz. Latency from the image stamp to the
   ActionChunk's arrival here, and the node's own split (its /diagnostics): waiting (stamp ->
   the worker picks the observation), preprocessing (decode, resize, assemble), inference,
   publishing; waiting is split into the frame's transport (``image_delivery``) and its time in
   the buffer; ``chunk_delivery`` (the chunk's way back here) is what remains. Per transport
   (Fast DDS defaults; the bringup's same-host profile, shared memory large enough for frames;
   LARGE_DATA) and with ``fresh_observations``. Target: overhead above inference <= 5 ms.

    python benchmarks/runtime_bench.py [--quick] [--torch-threads 2] [--out runtime.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from action_diffusion_policy.testing.node_process import start_node, stop_node

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

CAMERAS = ("cam_high", "cam_left_wrist")
JOINTS = [
    "waist",
    "shoulder",
    "elbow",
    "forearm_roll",
    "wrist_angle",
    "wrist_rotate",
    "left_finger",
    "right_finger",
]
HOME = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.03, -0.03]


def stats_ms(samples) -> dict:
    a = np.asarray(samples, dtype=np.float64) * 1e3
    return {
        "n": int(a.size),
        "mean_ms": round(float(a.mean()), 4),
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "max_ms": round(float(a.max()), 4),
    }


# --- 1. executor tick cost ---------------------------------------------------------------------
def bench_executor_tick(seconds: float, strategy: str) -> dict:
    from std_msgs.msg import Float64MultiArray  # noqa: F401  (import cost out of the loop)

    from action_diffusion_policy.runtime.command_outputs import plan_outputs
    from action_diffusion_policy.runtime.ensembler import EnsemblerConfig
    from action_diffusion_policy.runtime.executor import ExecutorCore
    from unified_action_space import load_embodiment

    emb = load_embodiment("aloha_sim", kinematics=False)
    plans = {arm.name: plan_outputs(arm) for arm in emb.arms}
    limits = emb.position_limits_unified
    core = ExecutorCore(
        emb.action_slots,
        limits[:, 0],
        limits[:, 1],
        emb.max_velocity_unified,
        rate_hz=50.0,
        ensembler_config=EnsemblerConfig(strategy=strategy),
    )
    core.set_measured(np.clip(np.zeros(len(emb.action_slots)), limits[:, 0], limits[:, 1]))
    rng = np.random.default_rng(0)
    k = len(emb.action_slots)
    dt, n_ticks = 0.02, int(seconds * 50)
    core_times, full_times, chunk_times, covering = [], [], [], []
    for i in range(n_ticks):
        now = 1000.0 + i * dt
        if i % 5 == 0:  # 10 Hz, conditioned on an observation 100 ms old
            chunk = (0.1 * rng.standard_normal((64, k))).astype(np.float32)
            chunk = np.clip(chunk, limits[:, 0], limits[:, 1])
            t0 = time.perf_counter()
            core.add_chunk(now - 0.1, dt, emb.action_slots, chunk)
            chunk_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        command, status = core.tick(now)
        t1 = time.perf_counter()
        commands = emb.commands_from_actions(command, core.slot_indices)
        for arm, arm_plans in plans.items():
            for plan in arm_plans:
                plan.message(commands[arm], now, dt)
        t2 = time.perf_counter()
        if i >= 50:  # skip the fill-up second
            core_times.append(t1 - t0)
            full_times.append(t2 - t0)
            covering.append(status.n_covering)
    return {
        "strategy": strategy,
        "chunks_covering_per_tick_mean": round(float(np.mean(covering)), 2),
        "core_tick": stats_ms(core_times),
        "tick_with_command_mapping_and_messages": stats_ms(full_times),
        "add_chunk": stats_ms(chunk_times),
        "target_mean_ms": 0.2,
    }


def publish_cameras(stop, domain: str) -> None:
    """A camera driver's stand-in, in its own process: 2 x 480x640 rgb8 at 30 Hz, stamped at
    publishing (so the bench process's own publishing does not delay what it measures)."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from action_diffusion_policy.runtime import conversions as cv

    os.environ["ROS_DOMAIN_ID"] = domain
    rclpy.init()
    node = Node("runtime_bench_cameras")
    rng = np.random.default_rng(0)
    images = {c: cv.rgb_to_image_msg(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), Image)
              for c in CAMERAS}
    pubs = {c: node.create_publisher(Image, f"/cameras/{c}/image_raw", 5) for c in CAMERAS}
    next_t = time.monotonic()
    while not stop.is_set():
        for cam, msg in images.items():
            msg.header.stamp = node.get_clock().now().to_msg()
            pubs[cam].publish(msg)
        next_t += 1 / 30
        time.sleep(max(0.0, next_t - time.monotonic()))
    node.destroy_node()
    rclpy.shutdown()


class Feeder:
    """Publishes joint states (and optionally cameras) and records what comes back."""

    def __init__(self, cameras: bool, chunks_for=None):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from action_diffusion_msgs.msg import ActionChunk
        from action_diffusion_policy.runtime import conversions as cv

        rclpy.init()
        self.node = node = Node("runtime_bench")
        self.cv, self.JointState, self.ActionChunk = cv, JointState, ActionChunk
        self.command_times: list[float] = []
        self.chunk_latency: list[float] = []
        self.diagnostics: dict[str, str] = {}
        self.executor_diagnostics: dict[str, str] = {}
        self.diag_seq, self.mark_at = 0, -1
        self.js_pubs = [
            node.create_publisher(JointState, f"/follower_{a}/joint_states", 10)
            for a in ("left", "right")
        ]
        node.create_timer(0.02, self._joint_states)
        self.camera_process = None
        if cameras:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            self.camera_stop = ctx.Event()
            self.camera_process = ctx.Process(
                target=publish_cameras, args=(self.camera_stop, os.environ["ROS_DOMAIN_ID"]),
                daemon=True)
            self.camera_process.start()
        node.create_subscription(
            Float64MultiArray,
            "/follower_right/commands/joint_positions",
            lambda _: self.command_times.append(time.perf_counter()),
            1000,
        )
        node.create_subscription(ActionChunk, "/policy/action_chunk", self._on_chunk, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.chunk_pub = node.create_publisher(ActionChunk, "/policy/action_chunk", 10)
        self.chunks_for = chunks_for
        if chunks_for is not None:
            node.create_timer(0.1, self._chunk)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _joint_states(self):
        for pub in self.js_pubs:
            msg = self.JointState(name=JOINTS, position=HOME, velocity=[0.0] * 8)
            msg.header.stamp = self.node.get_clock().now().to_msg()
            pub.publish(msg)

    def _chunk(self):
        slots = self.chunks_for
        actions = np.tile(np.asarray(HOME[:7] * 2, np.float32)[: len(slots)], (64, 1))
        actions[:, 6] = actions[:, 13] = 0.3  # gripper openings in [0, 1]
        chunk = self.cv.ChunkArrays(self.now() - 0.05, 0.02, np.asarray(slots), actions)
        self.chunk_pub.publish(self.cv.chunk_to_msg(chunk, self.ActionChunk))

    def _on_chunk(self, msg):
        if msg.checkpoint_id:  # ours (from _chunk) carry none
            stamp = self.cv.stamp_to_seconds(msg.header.stamp)
            self.chunk_latency.append(self.now() - stamp)

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name.startswith("action_executor"):
                self.executor_diagnostics = {kv.key: kv.value for kv in status.values}
            if status.name.endswith(": policy"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diag_seq += 1
                if self.diag_seq == self.mark_at:  # window boundary: chunks counted from here
                    self.chunk_latency.clear()

    def next_diagnostics(self, timeout: float = 5.0, mark: bool = False) -> dict:
        seq = self.diag_seq
        if mark:
            self.mark_at = seq + 1
        end = time.monotonic() + timeout
        while self.diag_seq == seq and time.monotonic() < end:
            time.sleep(0.01)
        return dict(self.diagnostics)

    def close(self):
        import rclpy

        if self.camera_process is not None:
            self.camera_stop.set()
            self.camera_process.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown()
        self.thread.join(timeout=5)


# --- 2. tick jitter ------------------------------------------------------------------------------
class CommandClock:
    """Arrival times of the executor's commands, on a node and thread of their own (real-time
    where permitted), so the feeder's publishing does not delay the measurement."""

    def __init__(self):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from std_msgs.msg import Float64MultiArray

        from action_diffusion_policy.runtime.ticker import set_realtime

        self.times: list[float] = []
        self.node = Node("runtime_bench_commands")
        self.node.create_subscription(
            Float64MultiArray, "/follower_right/commands/joint_positions",
            lambda _: self.times.append(time.perf_counter()), 5000)
        # The executor commands only while every arm's driver listens.
        self.node.create_subscription(
            Float64MultiArray, "/follower_left/commands/joint_positions", lambda _: None, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.scheduling: dict[str, str] = {}

        def spin():
            self.scheduling["why_not_realtime"] = set_realtime(70)
            self.executor.spin()

        self.thread = threading.Thread(target=spin, daemon=True)
        self.thread.start()

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.thread.join(timeout=5)


def bench_jitter(rate: float, seconds: float, tmp: Path, tick_clock: str,
                 beside_inference: bool, torch_threads: int,
                 realtime_priority: int = 80) -> dict:  # fmt: skip
    from unified_action_space import load_embodiment

    emb = load_embodiment("aloha_sim", kinematics=False)
    policy = None
    if beside_inference:  # a policy node inferring flat out, its chunks kept off the executor
        ckpt = make_small_checkpoint(tmp / "jitter_ckpt")
        policy = start_node(
            "action_diffusion_policy.nodes.policy_node",
            {"checkpoint": ckpt, "embodiment": "aloha_sim", "state_source": "joint_states",
             "camera_topics": "[" + ",".join(f"/cameras/{c}/image_raw" for c in CAMERAS) + "]",
             "torch_threads": torch_threads, "inference_rate": 0.0},
            tmp / f"jitter_policy_{rate}.log", remaps={"/policy/action_chunk": "/bench/chunks"})
    feeder = Feeder(cameras=beside_inference, chunks_for=[int(s) for s in emb.action_slots])
    clock = CommandClock()
    proc = start_node(
        "action_diffusion_policy.nodes.action_executor",
        {"embodiment": "aloha_sim", "rate": rate, "tick_clock": tick_clock,
         "realtime_priority": realtime_priority},
        tmp / f"executor_{rate}_{tick_clock}.log",
    )
    try:
        end = time.monotonic() + 180
        while time.monotonic() < end and (
                len(clock.times) < rate
                or (policy is not None and not feeder.diagnostics.get("count"))):  # inferring
            if proc.poll() is not None:
                raise RuntimeError((tmp / f"executor_{rate}_{tick_clock}.log").read_text())
            time.sleep(0.1)
        clock.times.clear()
        t0 = time.perf_counter()
        time.sleep(seconds)
        times = np.asarray(clock.times)
        window = time.perf_counter() - t0
        diag = dict(feeder.executor_diagnostics)
        inferring = dict(feeder.diagnostics)
    finally:
        stop_node(proc)
        if policy is not None:
            stop_node(policy)
        clock.close()
        feeder.close()
    period = 1.0 / rate
    intervals = np.diff(times)
    deviation = np.abs(intervals - period)
    node_tick = {k[len("tick_"):]: diag[k] for k in diag if k.startswith("tick_")}
    for key in list(node_tick):
        if key.endswith("_ms"):
            node_tick[key] = float(node_tick[key])
    out = {
        "rate_hz": rate,
        "tick_clock": tick_clock,
        "realtime_priority": realtime_priority if tick_clock == "thread" else None,
        "beside_inference": beside_inference,
        "node_tick": node_tick,
        "node_reported_rate_hz": float(diag.get("rate_hz", "nan")),
        "received": {
            "rate_hz": round(float(len(times) / window), 2),
            "ticks": len(times),
            "interval_mean_ms": round(float(intervals.mean() * 1e3), 4),
            "deviation_p50_ms": round(float(np.percentile(deviation, 50) * 1e3), 4),
            "deviation_p99_ms": round(float(np.percentile(deviation, 99) * 1e3), 4),
            "deviation_max_ms": round(float(deviation.max() * 1e3), 4),
            "receiver_realtime": clock.scheduling.get("why_not_realtime") or "SCHED_FIFO",
        },
    }
    if policy is not None:
        out["policy_inference_p95_ms"] = float(inferring.get("inference_p95_ms", "nan"))
        out["policy_chunks"] = int(float(inferring.get("count", 0)))
    return out


# --- 3. end-to-end latency -----------------------------------------------------------------------
def make_small_checkpoint(path: Path) -> Path:
    import torch

    from action_diffusion_policy.checkpoint import save_checkpoint
    from action_diffusion_policy.config import PolicyConfig
    from action_diffusion_policy.policy import ActionChunkPolicy

    torch.manual_seed(0)
    slots = [0, 1, 2, 3, 4, 5, 10, 50, 51, 52, 53, 54, 55, 60]
    config = PolicyConfig(
        backbone="unet",
        size="small",
        head="ddpm",
        sampler="ddim",
        num_inference_steps=10,
        horizon=64,
        n_obs_steps=2,
        camera_names=list(CAMERAS),
        image_size=(96, 128),  # 480x640 frames keep their aspect ratio
        state_slots=slots,
        action_slots=slots,
        control_frequency=50.0,
        embodiments=["aloha_sim"],
    )
    return save_checkpoint(ActionChunkPolicy(config), path)


PROFILE = Path(__file__).resolve().parents[1] / (
    "src/action_diffusion_bringup/config/fastdds_same_host.xml")
TRANSPORTS = {  # what the DDS participants of this process and its nodes use
    "default": {},
    "same_host_profile": {"FASTRTPS_DEFAULT_PROFILES_FILE": str(PROFILE),
                          "FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)},
    "large_data": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
}
DDS_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
           "FASTDDS_BUILTIN_TRANSPORTS")


def set_transport(name: str) -> None:
    for key in DDS_ENV:
        os.environ.pop(key, None)
    os.environ.update(TRANSPORTS[name])


def bench_end_to_end(seconds: float, torch_threads: int, tmp: Path, transport: str = "default",
                     fresh: bool = False, inference_path: str = "auto") -> dict:  # fmt: skip
    set_transport(transport)
    ckpt = make_small_checkpoint(tmp / "small_ckpt")
    cameras = "[" + ",".join(f"/cameras/{c}/image_raw" for c in CAMERAS) + "]"
    feeder = Feeder(cameras=True)
    proc = start_node(
        "action_diffusion_policy.nodes.policy_node",
        {
            "checkpoint": ckpt,
            "embodiment": "aloha_sim",
            "camera_topics": cameras,
            "state_source": "joint_states",
            "torch_threads": torch_threads,
            "inference_rate": 0.0,
            "fresh_observations": fresh,
            "inference_path": inference_path,
        },
        tmp / "policy.log",
    )
    try:
        end = time.monotonic() + 120
        while len(feeder.chunk_latency) < 5 and time.monotonic() < end:  # start-up, warm-up
            if proc.poll() is not None:
                raise RuntimeError((tmp / "policy.log").read_text()[-2000:])
            time.sleep(0.1)
        first = feeder.next_diagnostics(mark=True)  # the window starts at this report
        window_start = time.monotonic()
        time.sleep(seconds)
        last = feeder.next_diagnostics()
        window = time.monotonic() - window_start
        latency = list(feeder.chunk_latency)
    finally:
        stop_node(proc)
        feeder.close()
    n = int(float(last["count"])) - int(float(first["count"]))
    split = {}
    for stage in ("waiting", "preprocessing", "inference", "publishing"):
        total = float(last[f"{stage}_total_ms"]) - float(first[f"{stage}_total_ms"])
        split[stage] = {
            "mean_ms": round(total / n, 2),
            "p95_ms_last_200": round(float(last[f"{stage}_p95_ms"]), 2),
        }
    e2e = stats_ms(latency)
    inside = sum(v["mean_ms"] for v in split.values())
    delivery = float(last.get("image_delivery_mean_ms", "nan"))
    # waiting = the frame's transport (camera stamp -> the node's callback) + its time in the
    # buffer until the worker took it.
    split["waiting"]["image_delivery_mean_ms"] = round(delivery, 2)
    split["waiting"]["in_buffer_mean_ms"] = round(split["waiting"]["mean_ms"] - delivery, 2)
    return {
        "model": "unet small, DDIM 10 steps, 2 cams 96x128 (from 480x640), T=2, horizon 64",
        "transport": transport,
        "fresh_observations": fresh,
        "inference_path": last.get("inference_path", "?"),
        "overhead_above_inference_ms": round(e2e["mean_ms"] - split["inference"]["mean_ms"], 2),
        "target_overhead_ms": 5.0,
        "torch_threads": torch_threads,
        "chunks": n,
        "chunk_rate_hz": round(n / window, 2),
        "image_stamp_to_chunk_arrival": e2e,
        "node_split": split,
        "chunk_delivery_mean_ms": round(e2e["mean_ms"] - inside, 2),
        "dropped_observations": {
            key: int(last[key]) - int(first[key])
            for key in ("buffer_out_of_order", "buffer_future", "image_rejected", "stale")
        },
    }


def main() -> None:
    import sys

    # This process publishes, subscribes and measures on several threads: at CPython's default
    # 5 ms GIL switch interval a woken receiver could wait that long to record an arrival.
    sys.setswitchinterval(2e-4)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tick", "jitter", "e2e"])
    parser.add_argument("--rates", nargs="*", type=float, default=[50.0, 200.0, 500.0])
    parser.add_argument("--tick-clocks", nargs="*", default=["thread", "ros_timer"])
    parser.add_argument("--e2e", nargs="*", default=["default", "same_host_profile",
                                                      "same_host_profile:fresh"],
                        help="TRANSPORT[:fresh] variants of the end-to-end run")
    args = parser.parse_args()
    args.e2e_variants = []
    for spec in args.e2e:
        transport, _, fresh = spec.partition(":")
        if transport not in TRANSPORTS or fresh not in ("", "fresh"):
            parser.error(f"--e2e {spec!r}: TRANSPORT[:fresh] with TRANSPORT in {list(TRANSPORTS)}")
        args.e2e_variants.append((transport, fresh == "fresh"))
    seconds = 3.0 if args.quick else 10.0
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "ros_domain_id": os.environ["ROS_DOMAIN_ID"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "tick" not in args.skip:
            sim_s = 20.0 if args.quick else 120.0
            result["executor_tick"] = [
                bench_executor_tick(sim_s, s) for s in ("temporal_ensembling", "receding_horizon")
            ]
        if "jitter" not in args.skip:
            result["tick_jitter"] = []
            for beside in (False, True):
                for clock in args.tick_clocks:
                    for rate in args.rates if not beside else [50.0]:
                        row = bench_jitter(rate, seconds, tmp, clock, beside, args.torch_threads)
                        print(json.dumps(row), flush=True)
                        result["tick_jitter"].append(row)
        if "e2e" not in args.skip:
            result["end_to_end"] = []
            for transport, fresh in args.e2e_variants:
                row = bench_end_to_end(seconds * 2, args.torch_threads, tmp, transport, fresh)
                print(json.dumps(row), flush=True)
                result["end_to_end"].append(row)
            set_transport("default")
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        tmp_out = args.out.with_suffix(".tmp")
        tmp_out.write_text(text)
        tmp_out.replace(args.out)


if __name__ == "__main__":
    main()
