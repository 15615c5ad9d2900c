"""Last line before the robot: position limits, a per-tick step limit and hold-last-command.

Works on the commanded unified slots (the embodiment's ``action_slots``), in unified units
(rad, m, gripper opening in [0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class LimitStatus:
    """What one ``step`` did (for diagnostics)."""

    holding: bool = False  # the output is the held last command
    hold_reason: str = ""  # why ("no_action", "timeout", ...) while holding
    hold_duration: float = 0.0  # seconds since the hold started
    n_nonfinite: int = 0  # non-finite target entries replaced by the last command
    n_position_clipped: int = 0  # entries clipped to the position limits
    n_step_clipped: int = 0  # entries clipped to the per-tick step


class CommandLimiter:
    """Clips targets to position limits and a maximum step per tick; never emits non-finite.

    ``lower``/``upper``: position limits per slot; ``max_velocity``: per slot, units/s
    (``inf`` means no step limit). The first command must come from the robot's measured state
    (``reset``): until then ``step`` returns None, because holding "nothing" is not a command.
    """

    def __init__(self, lower, upper, max_velocity):
        self.lower = np.asarray(lower, dtype=np.float64).reshape(-1)
        self.upper = np.asarray(upper, dtype=np.float64).reshape(-1)
        self.max_velocity = np.asarray(max_velocity, dtype=np.float64).reshape(-1)
        k = self.lower.size
        if self.upper.size != k or self.max_velocity.size != k:
            raise ValueError(
                f"CommandLimiter: lower ({self.lower.size}), upper ({self.upper.size}) and "
                f"max_velocity ({self.max_velocity.size}) must have one entry per slot"
            )
        if not (self.lower <= self.upper).all():
            bad = np.flatnonzero(~(self.lower <= self.upper)).tolist()
            raise ValueError(f"CommandLimiter: lower > upper or NaN at slot positions {bad}")
        if np.isnan(self.max_velocity).any() or (self.max_velocity <= 0).any():
            bad = np.flatnonzero(~(self.max_velocity > 0)).tolist()
            raise ValueError(f"CommandLimiter: max_velocity must be > 0 (inf allowed) at {bad}")
        self.last: np.ndarray | None = None
        self._step_dt, self._step = math.nan, self.max_velocity * 0.0
        self._hold_since: float | None = None
        self._hold_reason = ""

    def _max_step(self, dt: float) -> np.ndarray:
        """Per-slot step allowed in ``dt`` seconds (inf where unlimited); cached per dt."""
        if dt != self._step_dt:
            dt_ok = dt if math.isfinite(dt) and dt > 0 else 0.0
            with np.errstate(invalid="ignore"):  # inf * 0 (no limit, zero dt) -> no limit
                step = np.where(np.isinf(self.max_velocity), np.inf, self.max_velocity * dt_ok)
            self._step_dt, self._step = dt, step
        return self._step

    @property
    def initialized(self) -> bool:
        return self.last is not None

    def reset(self, current) -> bool:
        """Start from the measured positions; returns False (and keeps the old state) if any
        value is non-finite."""
        current = np.asarray(current, dtype=np.float64).reshape(-1)
        if current.size != self.lower.size or not np.isfinite(current).all():
            return False
        self.last = np.clip(current, self.lower, self.upper)
        self._hold_since = None
        self._hold_reason = ""
        return True

    def step(
        self, target, dt: float, now_s: float, hold_reason: str = "no_action",
        speed_scale: float = 1.0,
    ) -> tuple[np.ndarray | None, LimitStatus]:
        """The command for this tick. ``target`` None means hold (``hold_reason`` says why).
        ``speed_scale`` in (0, 1] scales the step limit (a slow start after enabling)."""
        status = LimitStatus()
        if self.last is None:
            status.holding, status.hold_reason = True, "no_state"
            return None, status
        if target is None:
            if self._hold_since is None:
                self._hold_since = now_s
            self._hold_reason = hold_reason
            status.holding, status.hold_reason = True, hold_reason
            status.hold_duration = max(0.0, now_s - self._hold_since)
            return self.last.copy(), status
        self._hold_since, self._hold_reason = None, ""

        target = np.asarray(target, dtype=np.float64).reshape(-1)
        finite = np.isfinite(target)
        if not finite.all():
            status.n_nonfinite = int(target.size - np.count_nonzero(finite))
            target = np.where(finite, target, self.last)
        clipped = np.minimum(np.maximum(target, self.lower), self.upper)
        status.n_position_clipped = int(np.count_nonzero(clipped != target))
        max_step = self._max_step(dt)
        if speed_scale < 1.0:
            max_step = max_step * max(float(speed_scale), 0.0)
        stepped = np.minimum(np.maximum(clipped, self.last - max_step), self.last + max_step)
        status.n_step_clipped = int(np.count_nonzero(stepped != clipped))
        self.last = stepped
        return stepped.copy(), status
