"""Write ALOHA-like rosbag2 bags with hand-chosen timestamps (no rclpy, no DDS).

Used by tests that need exact control over stamps (the resampling rule) and by the dataset
benchmark. Values encode time so a test can tell which sample a tick took: joint ``waist`` of
both arms = the message's stamp in seconds; the command's waist = stamp + 1000; image pixel
(0, 0, 0) = frame number mod 256; object pose x = stamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer

from action_diffusion_policy.data.bags import (
    STORAGES,
    EpisodeMetadata,
    _write_sidecar,
    typestore,
    write_bag_crcs,
)

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
          "left_finger", "right_finger"]
ARMS = {"left": "/follower_left", "right": "/follower_right"}
CAMERA = "/cameras/cam_high/image_raw"


def _stamp(store, ns: int):
    Time = store.types["builtin_interfaces/msg/Time"]
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _header(store, ns: int):
    Header = store.types["std_msgs/msg/Header"]
    return Header(stamp=_stamp(store, ns), frame_id="")


def write_synthetic_bag(
    path: str | Path,
    joint_stamps_s: Sequence[float],
    command_stamps_s: Sequence[float] | None = None,
    image_stamps_s: Sequence[float] | None = None,
    status_stamps_s: Sequence[float] | None = None,
    image_size: tuple[int, int] = (48, 64),
    compressed: bool = False,
    storage: str = "mcap",
    metadata: EpisodeMetadata | None = None,
    t0_ns: int = 1_000_000_000_000,
    camera_topics: Sequence[str] = (CAMERA,),
) -> Path:
    """One bag; stamps are seconds after ``t0_ns``; log time = header stamp."""
    store = typestore()
    T = store.types
    path = Path(path)
    events: list[tuple[int, str, object]] = []
    for arm, ns in ARMS.items():
        for s in joint_stamps_s:
            t = t0_ns + round(s * 1e9)
            pos = np.full(8, 0.02, np.float64)
            pos[0] = s
            pos[6] = 0.04 if arm == "left" else 0.03
            msg = T["sensor_msgs/msg/JointState"](
                header=_header(store, t), name=list(JOINTS), position=pos,
                velocity=np.zeros(8), effort=np.zeros(0))
            events.append((t, f"{ns}/joint_states", msg))
        for s in (() if command_stamps_s is None else command_stamps_s):
            t = t0_ns + round(s * 1e9)
            MA = T["std_msgs/msg/Float64MultiArray"]
            Layout = T["std_msgs/msg/MultiArrayLayout"]
            data = np.full(7, 0.01)
            data[0] = s + 1000.0
            data[6] = 0.05
            events.append((t, f"{ns}/commands/joint_positions",
                           MA(layout=Layout(dim=[], data_offset=0), data=data)))
    h, w = image_size
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)  # texture, so JPEG is not trivial
    for i, s in enumerate(() if image_stamps_s is None else image_stamps_s):
        t = t0_ns + round(s * 1e9)
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :, 1] = 100
        if h * w > 10_000:
            img += noise
        img[0, 0, 0] = i % 256
        for cam in camera_topics:
            if compressed:
                import cv2

                ext = ".png" if h * w <= 10_000 else ".jpg"
                _ok, buf = cv2.imencode(ext, img[..., ::-1])
                msg = T["sensor_msgs/msg/CompressedImage"](
                    header=_header(store, t), format=ext[1:], data=buf.reshape(-1))
                events.append((t, f"{cam}/compressed", msg))
            else:
                msg = T["sensor_msgs/msg/Image"](
                    header=_header(store, t), height=h, width=w, encoding="rgb8",
                    is_bigendian=0, step=w * 3, data=img.reshape(-1))
                events.append((t, cam, msg))
    for s in (() if status_stamps_s is None else status_stamps_s):
        t = t0_ns + round(s * 1e9)
        poses = np.array([s, 0.5, 0.05, 1.0, 0.0, 0.0, 0.0])
        msg = T["action_diffusion_msgs/msg/EpisodeStatus"](
            header=_header(store, t), task="transfer_cube", seed=1, step=0, reward=0,
            max_reward=4, success=False, object_poses=poses)
        events.append((t, "/sim/episode_status", msg))
    events.sort(key=lambda e: e[0])
    types = {}
    for _, topic, msg in events:
        types.setdefault(topic, msg.__msgtype__)
    meta = metadata or EpisodeMetadata(embodiment="aloha_sim", task="transfer_cube",
                                       instruction="pick up the cube", success=True)
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        conns = {t: writer.add_connection(t, ty, typestore=store) for t, ty in types.items()}
        for t, topic, msg in events:
            writer.write(conns[topic], t, store.serialize_cdr(msg, msg.__msgtype__))
        for k, v in meta.to_custom_data().items():
            writer.set_custom_data(k, v)
    write_bag_crcs(path)  # as the recorder does
    _write_sidecar(path, meta, {t: sum(1 for e in events if e[1] == t) for t in types})
    return path
