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

import threading
import time
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Bool

from action_diffusion_policy.data.bags import BagError, open_bag
from action_diffusion_policy.nodes.recorder_node import message_class


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
        # Load the messages up front: timing must not depend on disk reads.
        self.messages: list[tuple[str, int, bytes]] = []
        with open_bag(self.bag) as reader:
            types = {c.topic: c.msgtype for c in reader.connections}
            unknown = [t for t in topics if t not in types]
            if unknown:
                raise BagError(
                    f"{self.bag}: topics not in the bag: {unknown} (has {sorted(types)})"
                )
            wanted = set(topics) if topics else set(types)
            conns = [c for c in reader.connections if c.topic in wanted]
            for conn, stamp, raw in reader.messages(connections=conns):
                self.messages.append((conn.topic, stamp, bytes(raw)))
        if not self.messages:
            raise BagError(f"{self.bag}: no messages to play")
        self.messages.sort(key=lambda m: m[1])
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {t: self.create_publisher(message_class(types[t]), t, qos) for t in wanted}
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.publish_clock else None
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.done_pub = self.create_publisher(Bool, "~/done", latched)
        self.done_pub.publish(Bool(data=False))
        self.finished = threading.Event()
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"playing {len(self.messages)} messages of {len(self.pubs)} topics from {self.bag} "
            f"at rate {self.rate}"
        )

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
        bag_start = self.messages[0][1]
        while True:
            wall0 = time.monotonic()

            def bag_now(wall0=wall0):
                return bag_start + int((time.monotonic() - wall0) * self.rate * 1e9)

            for topic, stamp, raw in self.messages:
                due = wall0 + (stamp - bag_start) / 1e9 / self.rate
                if not self._sleep_until(due, bag_now, stamp):
                    return
                if self.clock_pub is not None:
                    self.clock_pub.publish(clock_message(stamp))
                self.pubs[topic].publish(raw)
                self.published += 1
            if not self.loop:
                break
        self.done_pub.publish(Bool(data=True))
        self.finished.set()
        self.get_logger().info(f"playback finished: {self.published} messages")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def main(args=None) -> None:
    rclpy.init(args=args)
    node = BagPlayerNode()
    try:
        while rclpy.ok() and not node.finished.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
        # Give late subscribers' reliable acknowledgements a moment before exiting.
        end = time.monotonic() + 0.5
        while rclpy.ok() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.stop()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
