"""Bag player: publish a bag's messages with their original timing, on simulated time.

    bag_player --ros-args -p bag:=BAG_DIR [-p rate:=1.0] [-p loop:=false] [-p clock:=true]
               [-p topics:="['/a', '/b']"] [-p clock_frequency:=100.0] [-p start_delay:=0.5]

Messages are published as the serialized bytes stored in the bag (no deserialization), each at
``wall_start + (log_time - bag_start) / rate``. With ``clock`` on, ``/clock`` carries the bag's
time (``bag_start + elapsed_wall * rate``) at ``clock_frequency`` and just before every message,
so nodes started with ``use_sim_time:=true`` see the recorded time line. ``loop`` starts over at
the end (time jumps back, as with ``ros2 bag play --loop``).

Publishers are reliable with a deep queue, which best-effort subscribers also match. ``~/done``
(std_msgs/Bool, transient local) is latched true when playback ends.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Bool

from action_diffusion_policy.data.bags import BagError, open_bag
from action_diffusion_policy.nodes.recorder_node import message_class
from unified_action_space.nodes.node_main import run_node

PREFETCH = 256  # messages read ahead of the publishing thread
_END_OF_BAG = object()


def clock_message(ns: int) -> Clock:
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(int(ns), 1_000_000_000)
    return msg


class BagPlayerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("bag_player", **kwargs)
        p = self.declare_parameter
        self.bag = Path(p("bag", "").value)
        self.rate = float(p("rate", 1.0).value)
        self.loop = bool(p("loop", False).value)
        self.publish_clock = bool(p("clock", True).value)
        topics = [t for t in (p("topics", [""]).value or []) if t]
        self.clock_frequency = float(p("clock_frequency", 100.0).value)
        self.start_delay = float(p("start_delay", 0.5).value)
        if not str(self.bag) or str(self.bag) == ".":
            raise ValueError("parameter bag is empty: pass -p bag:=/path/to/bag")
        if self.rate <= 0:
            raise ValueError(f"parameter rate={self.rate}: must be > 0")
        with open_bag(self.bag) as reader:
            types = {c.topic: c.msgtype for c in reader.connections}
            unknown = [t for t in topics if t not in types]
            if unknown:
                raise BagError(
                    f"{self.bag}: topics not in the bag: {unknown} (has {sorted(types)})"
                )
            wanted = set(topics) if topics else set(types)
            self.total = sum(c.msgcount for c in reader.connections if c.topic in wanted)
        if self.total == 0:
            raise BagError(f"{self.bag}: no messages to play")
        self._wanted = wanted
        # A reader thread streams messages into a bounded queue, so a bag larger than memory
        # plays and disk reads never stall the timed publishing.
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH)
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {t: self.create_publisher(message_class(types[t]), t, qos) for t in wanted}
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.publish_clock else None
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.done_pub = self.create_publisher(Bool, "~/done", latched)
        self.done_pub.publish(Bool(data=False))
        self.finished = threading.Event()
        self.published = 0
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._reader = threading.Thread(target=self._read, name="bag_reader", daemon=True)
        self._reader.start()
        self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"playing {self.total} messages of {len(self.pubs)} topics from {self.bag} "
            f"at rate {self.rate}"
        )

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            while True:
                with open_bag(self.bag) as reader:
                    conns = [c for c in reader.connections if c.topic in self._wanted]
                    for conn, stamp, raw in reader.messages(connections=conns):
                        if not self._put((conn.topic, stamp, bytes(raw))):
                            return
                if not self._put(_END_OF_BAG) or not self.loop:
                    return
        except BaseException as exc:  # a damaged bag: stop playing and say why
            self.error = exc
            self.get_logger().error(f"reading {self.bag} failed: {exc}")
            self._put(_END_OF_BAG)
            self.loop = False

    def _next(self):
        while not self._stop.is_set():
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _sleep_until(self, wall: float, bag_now, cap_ns: int) -> bool:
        """Sleep until ``wall`` (monotonic), publishing /clock (never past ``cap_ns``, the next
        message's time, so the clock never runs backwards) meanwhile; False when stopped."""
        period = 1.0 / self.clock_frequency if self.clock_pub else 1.0
        while True:
            remaining = wall - time.monotonic()
            if remaining <= 0:
                return not self._stop.is_set()
            if self._stop.wait(min(remaining, period)):
                return False
            if self.clock_pub is not None:
                self.clock_pub.publish(clock_message(min(bag_now(), cap_ns)))

    def _play(self) -> None:
        if self._stop.wait(self.start_delay):
            return
        while True:
            item = self._next()
            if item is None:
                return
            if item is _END_OF_BAG:  # empty loop: the reader failed
                break
            bag_start, wall0 = item[1], time.monotonic()

            def bag_now(wall0=wall0, bag_start=bag_start):
                return bag_start + int((time.monotonic() - wall0) * self.rate * 1e9)

            while item is not _END_OF_BAG:
                topic, stamp, raw = item
                due = wall0 + (stamp - bag_start) / 1e9 / self.rate
                if not self._sleep_until(due, bag_now, stamp):
                    return
                if self.clock_pub is not None:
                    self.clock_pub.publish(clock_message(stamp))
                self.pubs[topic].publish(raw)
                self.published += 1
                item = self._next()
                if item is None:
                    return
            if not self.loop:
                break
        self.done_pub.publish(Bool(data=True))
        self.finished.set()
        self.get_logger().info(f"playback finished: {self.published} messages")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._reader.join(timeout=5)


def main(args=None) -> int:
    finished_at = []

    def finished(node: BagPlayerNode) -> bool:
        """Played out, plus 0.5 s for late subscribers' reliable acknowledgements."""
        if node.finished.is_set() and not finished_at:
            finished_at.append(time.monotonic())
        return bool(finished_at) and time.monotonic() - finished_at[0] > 0.5

    return run_node(
        BagPlayerNode, "bag_player", args,
        config_errors=(ValueError, BagError, OSError),
        halt=lambda node: node.stop(), finished=finished,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
