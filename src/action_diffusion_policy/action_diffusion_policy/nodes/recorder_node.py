"""Recorder node: one rosbag2 bag per demonstration episode.

Subscribes (raw, serialized CDR: no deserialization on the hot path) to the embodiment's camera,
joint-state, command and unified-state topics plus ``/sim/episode_status``, and hands the bytes to
:class:`~action_diffusion_policy.data.bags.BagRecorder`, which writes from its own thread.

Services (node-relative, e.g. ``/recorder/start``):
  ``~/start``        action_diffusion_msgs/srv/StartRecording (task, instruction, notes)
  ``~/stop``         std_srvs/srv/Trigger; the reply's message is JSON with the bag path and counts
  ``~/mark_success`` std_srvs/srv/SetBool; sets the success flag of the current (or last) bag

Parameters: ``embodiment`` (config name or path), ``topics`` ("topic:pkg/msg/Type" entries
replacing the defaults), ``extra_topics`` (added to them), ``camera_topics`` (raw image
topics replacing the embodiment's cameras), ``output_dir``, ``storage``
(``mcap``/``sqlite3``), ``compressed_images``, ``unified_state_topic``, ``instruction`` and
``task`` (defaults for auto mode), ``stamp_source`` (``receive``: the DDS receive time on the
node's clock, immune to executor delays, the default; ``callback``: the time the callback ran,
as ``ros2 bag record`` does), ``auto_episode`` (start a bag when the sim starts an episode,
stop ``post_success_s`` after success or when the next episode starts), ``bag_prefix``.

Crash safety (see :class:`~action_diffusion_policy.data.bags.BagRecorder`): ``flush_interval_s``
(s, default 1.0: what a killed recorder can lose, plus its backlog), ``min_free_mb`` (the
episode is closed cleanly, and no new one starts, while the bag's disk has less free space; the
start service then answers ``success: false`` with the reason), ``gap_s`` (a topic silent for
longer is recorded as a gap in ``episode.json``).

Subscriptions are created when a topic's first publisher appears, matching its reliability the
way ``ros2 bag record`` does (a reliable subscriber never matches a best-effort publisher).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import sys
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_srvs.srv import SetBool, Trigger

from action_diffusion_msgs.msg import EpisodeStatus
from action_diffusion_msgs.srv import StartRecording
from action_diffusion_policy.data import embodiment_adapter as ea
from action_diffusion_policy.data.bags import (
    BagError,
    BagRecorder,
    DiskFullError,
    EpisodeMetadata,
    ReceiveTimeMapper,
    update_episode_success,
)
from unified_action_space.nodes.node_main import run_node

QUEUE_DEPTH = 200


def message_class(msgtype: str):
    """``sensor_msgs/msg/Image`` -> the rclpy message class."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError, IndexError) as exc:
        raise ValueError(f"message type {msgtype!r} cannot be imported: {exc}") from exc


def parse_topic_specs(specs: list[str]) -> dict[str, str]:
    """["/a:sensor_msgs/msg/Image", ...] -> {"/a": "sensor_msgs/msg/Image"}."""
    out = {}
    for spec in specs:
        topic, sep, msgtype = spec.partition(":")
        if not sep or not topic.startswith("/") or msgtype.count("/") not in (1, 2):
            raise ValueError(
                f"topic entry {spec!r} must look like '/topic:pkg/msg/Type' "
                "(absolute topic, colon, message type)"
            )
        out[topic] = msgtype if msgtype.count("/") == 2 else msgtype.replace("/", "/msg/")
    return out


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("recorder", **kwargs)
        p = self.declare_parameter
        self.embodiment_name = p("embodiment", "aloha_sim").value
        topics = list(p("topics", [""]).value or [])
        extra = list(p("extra_topics", [""]).value or [])
        self.output_dir = Path(p("output_dir", "bags").value).expanduser()
        self.storage = p("storage", "mcap").value
        compressed = bool(p("compressed_images", False).value)
        unified_topic = p("unified_state_topic", ea.UNIFIED_STATE_TOPIC).value
        camera_topics = [t for t in (p("camera_topics", [""]).value or []) if t]
        self.default_task = p("task", "").value
        self.default_instruction = p("instruction", "").value
        self.auto_episode = bool(p("auto_episode", False).value)
        self.post_success_s = float(p("post_success_s", 0.5).value)
        self.bag_prefix = p("bag_prefix", "episode").value
        self.stamp_source = p("stamp_source", "receive").value
        self.flush_interval_s = float(p("flush_interval_s", 1.0).value)
        self.min_free_bytes = int(float(p("min_free_mb", 256.0).value) * 2**20)
        self.gap_s = float(p("gap_s", 0.5).value)
        for name, value in (("flush_interval_s", self.flush_interval_s), ("gap_s", self.gap_s)):
            if not value > 0:
                raise ValueError(f"parameter {name}={value!r}: must be > 0 s")
        if self.min_free_bytes < 0:
            raise ValueError(f"parameter min_free_mb={self.min_free_bytes / 2**20}: must be >= 0")
        if self.stamp_source not in ("receive", "callback"):
            raise ValueError(
                f"parameter stamp_source={self.stamp_source!r}: use 'receive' or 'callback'"
            )
        self._use_sim_time = bool(self.get_parameter("use_sim_time").value)
        self._time_map = ReceiveTimeMapper()
        if self.storage not in ("mcap", "sqlite3"):
            raise ValueError(f"parameter storage={self.storage!r}: use 'mcap' or 'sqlite3'")

        topics = [t for t in topics if t]
        if topics:
            self.topics = parse_topic_specs(topics)
        else:
            emb = ea.load(self.embodiment_name)
            self.topics = ea.record_topics(emb, compressed, unified_topic or None)
            if camera_topics:  # replace the embodiment's cameras
                self.topics = {t: ty for t, ty in self.topics.items()
                               if ty not in (ea.IMAGE_TYPE, ea.COMPRESSED_TYPE)}
                for t in camera_topics:
                    self.topics[f"{t}/compressed" if compressed else t] = (
                        ea.COMPRESSED_TYPE if compressed else ea.IMAGE_TYPE)
        self.topics.update(parse_topic_specs([t for t in extra if t]))
        self._classes = {t: message_class(ty) for t, ty in self.topics.items()}

        self._subs = {}
        self._recorder: BagRecorder | None = None
        self._meta: EpisodeMetadata | None = None
        self._last_bag: Path | None = None
        self._episode_count = 0
        self._status_key = None
        self._last_step = 0
        self._success_since = None

        if self._use_sim_time:
            clock_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
            self.create_subscription(Clock, "/clock", self._on_clock_info, clock_qos)
        self.create_service(StartRecording, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_service(SetBool, "~/mark_success", self._on_mark_success)
        if self.auto_episode:
            self.create_subscription(
                EpisodeStatus, ea.EPISODE_STATUS_TOPIC, self._on_status, 10
            )
        self._subscribe_available()
        self._discovery_timer = self.create_timer(0.25, self._subscribe_available)
        self._disk_timer = self.create_timer(0.25, self._check_disk)
        self.get_logger().info(
            f"recorder ready: {len(self.topics)} topics -> {self.output_dir} ({self.storage})"
        )

    # ----------------------------------------------------------------- subscriptions
    def _subscribe_available(self) -> None:
        for topic, cls in self._classes.items():
            if topic in self._subs:
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            reliable = all(
                i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos
            )
            # KEEP_ALL: the reader never overwrites a sample the executor has not taken yet
            # (with reliable publishers, DDS flow control then slows the writer instead).
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_ALL if reliable else HistoryPolicy.KEEP_LAST,
                depth=QUEUE_DEPTH,
                reliability=(
                    ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
                ),
                durability=DurabilityPolicy.VOLATILE,
            )
            self._subs[topic] = self.create_subscription(
                cls, topic, self._make_callback(topic), qos, raw=True
            )
            self.get_logger().info(f"recording {topic} ({self.topics[topic]})")

    def _on_clock_info(self, msg: Clock, info) -> None:
        received = info.get("received_timestamp", 0) if isinstance(info, dict) else 0
        if received:
            self._time_map.add_clock(received, msg.clock.sec * 1_000_000_000 + msg.clock.nanosec)

    def _stamp(self, info) -> int:
        """Bag time of a message: its DDS receive time on this node's clock (see
        ReceiveTimeMapper); the callback time when the middleware gives no receive time."""
        received = info.get("received_timestamp", 0) if isinstance(info, dict) else 0
        if self.stamp_source == "receive" and received:
            if not self._use_sim_time:
                return received
            sim = self._time_map.to_sim(received)
            if sim is not None:
                return sim
        return self.get_clock().now().nanoseconds

    def _make_callback(self, topic: str):
        def callback(data: bytes, info) -> None:
            rec = self._recorder
            if rec is not None:
                rec.put(topic, self._stamp(info), data)

        return callback

    # ----------------------------------------------------------------- episodes
    def start_episode(self, task: str, instruction: str, notes: str = "") -> Path:
        if self._recorder is not None:
            raise BagError(f"already recording into {self._recorder.path}; stop it first")
        self._subscribe_available()
        self._episode_count += 1
        stamp = _dt.datetime.now(_dt.UTC)
        name = f"{self.bag_prefix}_{stamp:%Y%m%d_%H%M%S}_{self._episode_count:03d}"
        path = self.output_dir / name
        self._meta = EpisodeMetadata(
            embodiment=self.embodiment_name,
            task=task,
            instruction=instruction,
            notes=notes,
            started_at=stamp.isoformat(),
        )
        self._recorder = BagRecorder(
            path, self.topics, self.storage, metadata=self._meta,
            flush_interval_s=self.flush_interval_s, min_free_bytes=self.min_free_bytes,
            gap_s=self.gap_s,
        )  # fmt: skip
        self._success_since = None
        self.get_logger().info(f"recording episode into {path}")
        return path

    def stop_episode(self) -> dict:
        rec, meta = self._recorder, self._meta
        if rec is None:
            raise BagError("not recording")
        self._recorder = None
        stats = rec.stop(meta)
        self._last_bag = rec.path
        report = {
            "bag_path": stats.bag_path,
            "messages": stats.written,
            "received": stats.received,
            "lost": stats.lost,
            "max_queue": stats.max_queue,
            "success": meta.success,
            "gaps": stats.gaps,
            "stopped_by": stats.stopped_by,
        }
        self.get_logger().info(f"stopped: {json.dumps(report)}")
        for topic, spans in stats.gaps.items():
            self.get_logger().warn(
                f"{rec.path.name}: {topic} was silent for "
                + ", ".join(f"{b - a:.2f} s at t={a:.2f}" for a, b in spans)
                + " (kept in episode.json; build_dataset drops those ticks)"
            )
        return report

    def _check_disk(self) -> None:
        """The writer's free-space guard tripped: close the episode now, keeping what it wrote."""
        rec = self._recorder
        if rec is not None and rec.disk_full:
            self.get_logger().error(f"{rec.disk_full}; episode {rec.path} stopped and kept")
            self.stop_episode()

    def _on_start(self, request, response):
        try:
            path = self.start_episode(
                request.task or self.default_task,
                request.instruction or self.default_instruction,
                request.notes,
            )
        except (BagError, OSError) as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message, response.bag_path = True, "recording", str(path)
        return response

    def _on_stop(self, request, response):
        try:
            response.message = json.dumps(self.stop_episode())
            response.success = True
        except (BagError, OSError) as exc:
            response.success, response.message = False, str(exc)
        return response

    def _on_mark_success(self, request, response):
        if self._meta is not None and self._recorder is not None:
            self._meta.success = bool(request.data)
            response.success = True
            response.message = f"{self._recorder.path}: success={request.data}"
        elif self._last_bag is not None:
            update_episode_success(self._last_bag, bool(request.data))
            response.success, response.message = True, f"{self._last_bag}: success={request.data}"
        else:
            response.success, response.message = False, "no episode recorded yet"
        return response

    def _on_status(self, msg: EpisodeStatus) -> None:
        key = (msg.task, msg.seed)
        # A new episode: another task/seed, or the step count going back (a reset, same seed).
        new_episode = key != self._status_key or msg.step < self._last_step
        self._last_step = msg.step
        if new_episode and not msg.success:
            if self._recorder is not None:
                self.stop_episode()
            self._status_key = key
            try:
                self.start_episode(msg.task or self.default_task, self.default_instruction,
                                   f"seed={msg.seed}")
            except DiskFullError as exc:  # no crash: the next episode tries again
                self.get_logger().error(f"episode seed={msg.seed} not recorded: {exc}")
            return
        if self._recorder is None:
            return
        if msg.success:
            self._meta.success = True
            now = self.get_clock().now().nanoseconds
            if self._success_since is None:
                self._success_since = now
            elif now - self._success_since >= self.post_success_s * 1e9:
                self.stop_episode()

    def shutdown(self) -> None:
        if self._recorder is not None:
            self.stop_episode()


def main(args=None) -> int:
    return run_node(
        RecorderNode, "recorder_node", args,
        config_errors=(ValueError, BagError, OSError),
        close=lambda node: node.shutdown(),  # closes the bag of a running episode
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
