"""Recorder load test: does recorder_node lose messages at camera + joint rates?

Three processes over real DDS (Fast DDS, localhost): a publisher of 2 cameras at 30 Hz
(640x480 rgb8, or JPEG CompressedImage with --compressed) and 2 joint states at 50 Hz; the real
recorder_node (its console-script module); and this controller, which starts and stops the
recording through the node's services and compares what was published with what the bag holds.

    python benchmarks/recorder_bench.py --duration 300 [--compressed] [--storage mcap|sqlite3]

Prints JSON: published and recorded counts per topic, lost messages, achieved publish rates,
recorder CPU use, bag size and write throughput. The bag is deleted unless --keep.

    python benchmarks/recorder_bench.py --writer-only [--duration 20]

The writer alone, no DDS: ``BagRecorder`` fed the same message mix (2 x 30 Hz VGA rgb8 + 2 x
50 Hz joint states) as fast as it takes it, once with the crash-safe defaults (a chunk flushed
and fsynced every second) and once without flushing. Prints the write throughput, the headroom
(recorded seconds per wall second: > 1 keeps up) and the cost of the flushes, all from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAMS = ["/cameras/cam_high/image_raw", "/cameras/cam_left_wrist/image_raw"]
JOINTS = ["/follower_left/joint_states", "/follower_right/joint_states"]


def topic_specs(compressed: bool) -> dict[str, str]:
    specs = {}
    for c in CAMS:
        if compressed:
            specs[f"{c}/compressed"] = "sensor_msgs/msg/CompressedImage"
        else:
            specs[c] = "sensor_msgs/msg/Image"
    for j in JOINTS:
        specs[j] = "sensor_msgs/msg/JointState"
    return specs


def run_publisher(args) -> None:
    """Publish until the stop file appears; write counts to args.counts."""
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image, JointState

    from action_diffusion_policy.data.images import rgb_to_compressed_bytes

    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    specs = topic_specs(args.compressed)
    pubs = {
        t: node.create_publisher(CompressedImage if "Compressed" in ty else
                                 (Image if ty.endswith("Image") else JointState), t, qos)
        for t, ty in specs.items()
    }
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    jpeg = rgb_to_compressed_bytes(base, 80) if args.compressed else None
    raw = base.tobytes()
    counts = dict.fromkeys(specs, 0)
    # Wait until the recorder subscribed to every topic.
    t_wait = time.monotonic() + 30
    while time.monotonic() < t_wait and not all(
        p.get_subscription_count() > 0 for p in pubs.values()
    ):
        time.sleep(0.05)
    Path(args.ready).touch()
    while not Path(args.go).exists():
        time.sleep(0.01)
    period = 1.0 / 150.0  # 150 Hz base: cameras every 5th tick (30 Hz), joints every 3rd (50 Hz)
    t0 = time.monotonic()
    tick = 0
    while not Path(args.stop).exists():
        now = node.get_clock().now().to_msg()
        if tick % 5 == 0:
            for c in CAMS:
                if args.compressed:
                    m = CompressedImage(format="jpeg", data=jpeg)
                    topic = f"{c}/compressed"
                else:
                    m = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=raw)
                    topic = c
                m.header.stamp = now
                pubs[topic].publish(m)
                counts[topic] += 1
        if tick % 3 == 0:
            for j in JOINTS:
                m = JointState(name=[f"j{i}" for i in range(8)], position=[0.1 * tick] * 8,
                               velocity=[0.0] * 8)
                m.header.stamp = now
                pubs[j].publish(m)
                counts[j] += 1
        tick += 1
        delay = t0 + tick * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - t0
    time.sleep(1.0)  # let reliable retransmissions finish before the participant goes away
    Path(args.counts).write_text(json.dumps({"counts": counts, "elapsed": elapsed}))
    node.destroy_node()
    rclpy.shutdown()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call(node, srv_type, name, request, timeout=60.0):
    import rclpy

    cli = node.create_client(srv_type, name)
    if not cli.wait_for_service(timeout_sec=30):
        raise RuntimeError(f"service {name} not available")
    fut = cli.call_async(request)
    rclpy.spin_until_future_complete(node, fut, timeout_sec=timeout)
    if not fut.done():
        raise RuntimeError(f"service {name} timed out")
    return fut.result()


def writer_only(seconds: float, storage: str, keep: bool) -> dict:
    """Recorded seconds per wall second of BagRecorder at the bench's message mix."""
    import numpy as np

    from action_diffusion_policy.data.bags import BagRecorder, EpisodeMetadata, typestore

    store = typestore()
    T = store.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                      frame_id="cam")
    image = bytes(store.serialize_cdr(T["sensor_msgs/msg/Image"](
        header=header, height=480, width=640, encoding="rgb8", is_bigendian=0, step=640 * 3,
        data=np.random.default_rng(0).integers(0, 256, 480 * 640 * 3, dtype=np.uint8)),
        "sensor_msgs/msg/Image"))
    joint = bytes(store.serialize_cdr(T["sensor_msgs/msg/JointState"](
        header=header, name=[f"j{i}" for i in range(8)], position=np.zeros(8),
        velocity=np.zeros(8), effort=np.zeros(8)), "sensor_msgs/msg/JointState"))
    events = sorted([(int(k * 1e9 / 30), c, image) for c in CAMS
                     for k in range(int(seconds * 30))]
                    + [(int(k * 1e9 / 50), j, joint) for j in JOINTS
                       for k in range(int(seconds * 50))])  # fmt: skip
    payload = sum(len(e[2]) for e in events)
    rows = {}
    for label, flush, fsync in (("crash_safe_default", 1.0, True), ("no_flush", 1e9, False)):
        work = Path(tempfile.mkdtemp(prefix="writer_bench_"))
        t0 = time.perf_counter()
        rec = BagRecorder(work / "bag", topic_specs(False), storage, flush_interval_s=flush,
                          fsync=fsync)  # fmt: skip
        for stamp, topic, data in events:
            rec.put(topic, stamp, data)
        stats = rec.stop(EpisodeMetadata())
        wall = time.perf_counter() - t0
        rows[label] = {
            "wall_s": round(wall, 3),
            "mb_per_s": round(payload / wall / 1e6, 1),
            "headroom": round(seconds / wall, 2),
            "lost": stats.lost,
        }
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "mode": "writer_only",
        "recorded_s": seconds,
        "messages": len(events),
        "payload_mb": round(payload / 1e6, 1),
        "needed_mb_per_s": round(payload / seconds / 1e6, 1),
        "storage": storage,
        "rows": rows,
        "flush_cost": round(rows["crash_safe_default"]["wall_s"] / rows["no_flush"]["wall_s"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--writer-only", action="store_true",
                    help="BagRecorder alone, no DDS: throughput headroom and the cost of flushing")
    ap.add_argument("--compressed", action="store_true")
    ap.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--large-data", action="store_true",
                    help="FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for all processes (shared memory "
                         "+ TCP for user data instead of fragmented UDP)")
    ap.add_argument("--role", default="controller", help=argparse.SUPPRESS)
    ap.add_argument("--ready", help=argparse.SUPPRESS)
    ap.add_argument("--go", help=argparse.SUPPRESS)
    ap.add_argument("--stop", help=argparse.SUPPRESS)
    ap.add_argument("--counts", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "publisher":
        run_publisher(args)
        return
    if args.writer_only:
        print(json.dumps(writer_only(args.duration, args.storage, args.keep), indent=1))
        return

    if args.large_data:
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from std_srvs.srv import Trigger

    from action_diffusion_msgs.srv import StartRecording
    from action_diffusion_policy.data.bags import open_bag

    work = Path(tempfile.mkdtemp(prefix="recorder_bench_"))
    files = {k: str(work / k) for k in ("ready", "go", "stop", "counts")}
    specs = topic_specs(args.compressed)
    topics_param = "[" + ",".join(f"'{t}:{ty}'" for t, ty in specs.items()) + "]"
    recorder = subprocess.Popen(
        [sys.executable, "-m", "action_diffusion_policy.nodes.recorder_node", "--ros-args",
         "-p", f"topics:={topics_param}", "-p", f"output_dir:={work / 'bags'}",
         "-p", f"storage:={args.storage}", "--log-level", "warn"],
    )
    publisher = subprocess.Popen(
        [sys.executable, __file__, "--role", "publisher", *(["--compressed"] * args.compressed),
         *[x for k, v in files.items() for x in (f"--{k}", v)]],
    )
    rclpy.init()
    node = rclpy.create_node("bench_controller")
    try:
        while not Path(files["ready"]).exists():
            if publisher.poll() is not None or recorder.poll() is not None:
                raise RuntimeError("publisher or recorder exited early")
            time.sleep(0.1)
        start = call(node, StartRecording, "/recorder/start",
                     StartRecording.Request(task="bench", instruction="", notes="load test"))
        cpu0, t0 = cpu_seconds(recorder.pid), time.monotonic()
        Path(files["go"]).touch()
        time.sleep(args.duration)
        Path(files["stop"]).touch()
        while not Path(files["counts"]).exists():
            time.sleep(0.1)
        published = json.loads(Path(files["counts"]).read_text())
        stop = call(node, Trigger, "/recorder/stop", Trigger.Request(), timeout=600)
        cpu1, t1 = cpu_seconds(recorder.pid), time.monotonic()
        stop_report = json.loads(stop.message)
        bag = Path(start.bag_path)
        with open_bag(bag) as reader:
            in_bag = {c.topic: c.msgcount for c in reader.connections}
        size = sum(f.stat().st_size for f in bag.iterdir())
        counts = published["counts"]
        result = {
            "duration_s": round(published["elapsed"], 2),
            "storage": args.storage,
            "fastdds_transports": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT"),
            "images": "jpeg CompressedImage" if args.compressed else "raw rgb8 640x480",
            "published": counts,
            "received_by_recorder": stop_report["received"],
            "recorded": in_bag,
            "lost": sum(counts.values()) - sum(in_bag.get(t, 0) for t in counts),
            "publish_rate_hz": {t: round(n / published["elapsed"], 2) for t, n in counts.items()},
            "recorder_max_queue": stop_report["max_queue"],
            "recorder_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
            "bag_mb": round(size / 1e6, 1),
            "write_mb_per_s": round(size / 1e6 / published["elapsed"], 1),
            "cpu_count": os.cpu_count(),
            "load_avg_1min": os.getloadavg()[0],
        }
        print(json.dumps(result, indent=1))
    finally:
        for p in (publisher, recorder):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        node.destroy_node()
        rclpy.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
