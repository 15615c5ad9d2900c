"""Plain data types shared by the policy, the runtime nodes and the evaluators (no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Observation:
    """What the policy sees at one replanning tick.

    images: camera name -> (T, H, W, 3) uint8 RGB, oldest frame first.
    state: (T, 128) float32 unified state, oldest first.
    state_mask: (128,) bool, which unified slots the robot fills.
    env_state: (T, D) float32 privileged object pose (sim, low-dim policies) or None.
    lang_embedding: (L, E) float32 instruction embedding (e.g. from T5) or None.
    control_frequency: Hz of the robot's control loop.
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    state_mask: np.ndarray
    env_state: np.ndarray | None = None
    lang_embedding: np.ndarray | None = None
    control_frequency: float = 50.0


@dataclass
class PolicySpec:
    """What a checkpoint expects and produces; read by the nodes and the evaluators."""

    camera_names: list[str]
    image_size: tuple[int, int] | None  # (H, W); None for low-dim policies
    n_obs_steps: int
    horizon: int
    action_slots: list[int]  # unified slots of the chunk's columns, in order
    state_slots: list[int]  # unified slots of the state the policy reads
    env_state_dim: int = 0
    control_frequency: float = 50.0
    embodiments: list[str] = field(default_factory=list)
    checkpoint_id: str = ""

    @property
    def action_dim(self) -> int:
        return len(self.action_slots)

    def to_json(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> PolicySpec:
        d = dict(d)
        if d.get("image_size") is not None:
            d["image_size"] = tuple(d["image_size"])
        return cls(**d)
