"""Runtime benchmark: executor tick cost, tick-period jitter, end-to-end policy latency. JSON.

1. ``executor_tick``: per-tick cost of the executor's pure path (ensembler -> timeout/hold ->
   limiter -> unified-to-driver command mapping -> message build) for the aloha_sim embodiment
   (14 slots) at 50 Hz, with 64-step chunks arriving at 10 Hz (each 100 ms late, as from a
   policy that thinks for 100 ms). Target: mean <= 0.2 ms.
2. ``tick_jitter``: the action_executor node in its own process at 50 Hz and 200 Hz, fed chunks
   and joint states over DDS; inter-arrival of its commands at a subscriber in this process
   (timer jitter plus DDS delivery): p50/p99/max deviation from the period.
3. ``end_to_end``: policy_node in its own process running the default small model (U-Net
   ``small``, DDIM 10 steps, 2 cameras at 96x96, 2 observation steps, horizon 64), fed 2 cameras
   at 30 Hz (480x640 rgb8) and joint states at 50 Hz. Latency from the image stamp to the
   ActionChunk's arrival here, and the node's own split (its /diagnostics): waiting (stamp ->
   the worker picks the observation), preprocessing (decode, resize, assemble), inference,
   publishing; ``dds_delivery`` is what remains.

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

    from action_diffusion_policy.runtime import conversions as cv
    from action_diffusion_policy.runtime.ensembler import EnsemblerConfig
    from action_diffusion_policy.runtime.executor import ExecutorCore
    from unified_action_space import load_embodiment

    emb = load_embodiment("aloha_sim", kinematics=False)
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
        for arm in emb.arms:
            cv.command_to_msg(
                arm.command_type, commands[arm.name], arm.command_joint_names, now, dt
            )
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


class Feeder:
    """Publishes joint states (and optionally cameras) and records what comes back."""

    def __init__(self, cameras: bool, chunks_for=None):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image, JointState
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
        if cameras:
            rng = np.random.default_rng(0)
            self.images = {
                c: cv.rgb_to_image_msg(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), Image)
                for c in CAMERAS
            }
            self.image_pubs = {
                c: node.create_publisher(Image, f"/cameras/{c}/image_raw", 5) for c in CAMERAS
            }
            node.create_timer(1 / 30, self._images)
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

    def _images(self):
        for cam, msg in self.images.items():
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.image_pubs[cam].publish(msg)

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

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown()
        self.thread.join(timeout=5)


# --- 2. tick jitter ------------------------------------------------------------------------------
def bench_jitter(rate: float, seconds: float, tmp: Path) -> dict:
    from unified_action_space import load_embodiment

    emb = load_embodiment("aloha_sim", kinematics=False)
    feeder = Feeder(cameras=False, chunks_for=[int(s) for s in emb.action_slots])
    proc = start_node(
        "action_diffusion_policy.nodes.action_executor",
        {"embodiment": "aloha_sim", "rate": rate},
        tmp / f"executor_{rate}.log",
    )
    try:
        end = time.monotonic() + 60
        while len(feeder.command_times) < rate and time.monotonic() < end:  # start-up
            time.sleep(0.1)
        feeder.command_times.clear()
        time.sleep(seconds)
        times = np.asarray(feeder.command_times)
        node_rate = feeder.executor_diagnostics.get("rate_hz", "nan")
    finally:
        stop_node(proc)
        feeder.close()
    period = 1.0 / rate
    intervals = np.diff(times)
    deviation = np.abs(intervals - period)
    return {
        "rate_hz": rate,
        # What arrived here (this process's throughput caps it) and what the node timed of its
        # own ticks (/diagnostics, last 5 s).
        "measured_rate_hz": round(float(len(times) / seconds), 2),
        "node_reported_rate_hz": float(node_rate),
        "ticks": len(times),
        "interval_mean_ms": round(float(intervals.mean() * 1e3), 4),
        "deviation_p50_ms": round(float(np.percentile(deviation, 50) * 1e3), 4),
        "deviation_p99_ms": round(float(np.percentile(deviation, 99) * 1e3), 4),
        "deviation_max_ms": round(float(deviation.max() * 1e3), 4),
    }


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
        image_size=(96, 96),
        state_slots=slots,
        action_slots=slots,
        control_frequency=50.0,
        embodiments=["aloha_sim"],
    )
    return save_checkpoint(ActionChunkPolicy(config), path)


def bench_end_to_end(seconds: float, torch_threads: int, tmp: Path) -> dict:
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
    return {
        "model": "unet small, DDIM 10 steps, 2 cams 96x96 (from 480x640), T=2, horizon 64",
        "torch_threads": torch_threads,
        "chunks": n,
        "chunk_rate_hz": round(n / window, 2),
        "image_stamp_to_chunk_arrival": e2e,
        "node_split": split,
        "dds_delivery_mean_ms": round(e2e["mean_ms"] - inside, 2),
        "dropped_observations": {
            key: int(last[key]) - int(first[key])
            for key in ("buffer_out_of_order", "buffer_future", "image_rejected", "stale")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tick", "jitter", "e2e"])
    args = parser.parse_args()
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
            result["tick_jitter"] = [bench_jitter(r, seconds, tmp) for r in (50.0, 200.0)]
        if "e2e" not in args.skip:
            result["end_to_end"] = bench_end_to_end(seconds * 2, args.torch_threads, tmp)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        tmp_out = args.out.with_suffix(".tmp")
        tmp_out.write_text(text)
        tmp_out.replace(args.out)


if __name__ == "__main__":
    main()
