"""Every arm's latest joint state -> one unified state, only while every arm is fresh.

One pure class (no rclpy, no messages) used by each node that builds a state from the arms'
``sensor_msgs/JointState`` topics: ``unified_state_node``, ``policy_node`` (``state_source:
joint_states``) and ``action_executor``. An arm whose driver stops would otherwise go on
feeding its last state forever.

Times: receive times and ``now`` are integer nanoseconds on the caller's clock (the node's
clock: sim time under ``use_sim_time``); ``stale_timeout`` is in seconds. Header stamps are
carried through untouched (any comparable number, e.g. ns or s) and only compared to pick the
newest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unified_action_space.embodiment import Embodiment

MISSING = "missing"
STALE = "stale"


@dataclass(frozen=True)
class ArmReading:
    """The latest joint state of one arm, as arrays."""

    names: Sequence[str]
    positions: Any  # (n,) float array
    velocities: Any  # (n,) float array, shorter, or None
    stamp: Any  # the message's header stamp, in the caller's unit
    received_ns: int  # when it arrived, on the caller's clock


@dataclass(frozen=True)
class ArmProblem:
    """Why an arm blocks the state: ``kind`` is ``missing`` or ``stale``."""

    kind: str
    text: str
    age_s: float | None = None  # seconds since the last message (stale only)


@dataclass(frozen=True)
class AssembledState:
    values: np.ndarray  # (128,) float32
    mask: np.ndarray  # (128,) bool
    stamp: Any  # the newest of the arms' stamps


class StateAssembler:
    """Latest joint state per arm, a per-arm staleness timeout, and the mapping to 128 slots.

    ``update`` stores an arm's message; ``problems(now_ns)`` names each arm that has sent
    nothing yet or nothing for more than ``stale_timeout`` seconds; ``assemble(now_ns)`` returns
    ``(state, {})`` when every arm is fresh and ``(None, problems)`` otherwise. A state that
    cannot be mapped (a missing joint, NaN/inf) raises ``JointStateError`` from
    :meth:`Embodiment.state_from_joint_states`, naming the arm and the joint.
    """

    def __init__(self, embodiment: Embodiment, stale_timeout: float, fk: bool = True):
        stale_timeout = float(stale_timeout)
        if not stale_timeout > 0:
            raise ValueError(f"stale_timeout={stale_timeout!r}: must be > 0 s")
        self.embodiment = embodiment
        self.stale_timeout_ns = int(stale_timeout * 1e9)
        self.fk = bool(fk)
        # (arm, topic) -> its latest reading; an arm may merge several topics (FR3's fingers).
        self._latest: dict[tuple[str, str], ArmReading] = {}
        self._inputs = [(a.name, t) for a in embodiment.arms for t in a.joint_state_topics]

    def update(
        self, arm: str, names, positions, velocities, stamp, received_ns: int,
        topic: str | None = None,
    ) -> None:  # fmt: skip
        """Store ``arm``'s newest joint state (``velocities`` None: no velocities) from
        ``topic`` (default: the arm's ``joint_state_topic``)."""
        if arm not in self.embodiment.arm_names:
            raise ValueError(
                f"arm {arm!r} is not an arm of embodiment {self.embodiment.name!r} "
                f"({list(self.embodiment.arm_names)})"
            )
        topics = self.embodiment.arm(arm).joint_state_topics
        topic = topics[0] if topic is None else topic
        if topic not in topics:
            raise ValueError(f"arm {arm!r} takes joint states on {list(topics)}, not {topic!r}")
        self._latest[(arm, topic)] = ArmReading(
            names, positions, velocities, stamp, int(received_ns)
        )

    def clear(self) -> None:
        """Forget every arm (a new episode: the next complete set of states starts over)."""
        self._latest.clear()

    def latest(self, arm: str, topic: str | None = None) -> ArmReading | None:
        topic = self.embodiment.arm(arm).joint_state_topic if topic is None else topic
        return self._latest.get((arm, topic))

    @property
    def complete(self) -> bool:
        """Every arm has sent at least one joint state on each of its topics (fresh or not)."""
        return len(self._latest) == len(self._inputs)

    def newest_stamp(self):
        """The newest stamp over the arms heard from; None before any."""
        return max((r.stamp for r in self._latest.values()), default=None)

    def problems(self, now_ns: int) -> dict[str, ArmProblem]:
        """Arm name -> why it blocks the state (its first silent topic), in the embodiment's
        arm order; empty when every topic of every arm is fresh."""
        out = {}
        for arm, topic in self._inputs:
            if arm in out:
                continue
            latest = self._latest.get((arm, topic))
            if latest is None:
                out[arm] = ArmProblem(MISSING, f"no joint state received on {topic}")
            elif now_ns - latest.received_ns > self.stale_timeout_ns:
                age = (now_ns - latest.received_ns) / 1e9
                out[arm] = ArmProblem(
                    STALE, f"joint state on {topic} is stale ({age:.2f} s old)", age
                )
        return out

    def _merged(self, arm) -> tuple[Sequence[str], Any, Any]:
        return merge_joint_states(
            [(r.names, r.positions, r.velocities)
             for r in (self._latest[(arm.name, t)] for t in arm.joint_state_topics)]
        )  # fmt: skip

    def assemble(self, now_ns: int) -> tuple[AssembledState | None, dict[str, ArmProblem]]:
        """``(state, {})`` when every arm is fresh, else ``(None, problems)``.

        Raises JointStateError when the fresh states cannot be mapped.
        """
        problems = self.problems(now_ns)
        if problems:
            return None, problems
        inputs = {arm.name: self._merged(arm) for arm in self.embodiment.arms}
        values, mask = self.embodiment.state_from_joint_states(inputs, fk=self.fk)
        return AssembledState(values, mask, self.newest_stamp()), {}


def merge_joint_states(parts: Sequence[tuple]) -> tuple[Sequence[str], Any, Any]:
    """Several (names, positions, velocities or None) of one arm, from its JointState topics
    (FR3: arm + gripper), -> one. Velocities only when every part has one per name."""
    if len(parts) == 1:
        return parts[0]
    names = [n for p in parts for n in p[0]]
    positions = np.concatenate([np.asarray(p[1], dtype=np.float64) for p in parts])
    full = all(p[2] is not None and len(p[2]) == len(p[0]) for p in parts)
    velocities = (np.concatenate([np.asarray(p[2], dtype=np.float64) for p in parts])
                  if full else None)  # fmt: skip
    return names, positions, velocities


def describe_problems(problems: dict[str, ArmProblem]) -> str:
    """One line for a log: ``arm 'right': joint state on ... is stale (0.61 s old); ...``."""
    return "; ".join(f"arm {arm!r}: {p.text}" for arm, p in problems.items())
