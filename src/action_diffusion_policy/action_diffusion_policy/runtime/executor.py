"""The executor's per-tick logic without ROS: ensembler -> timeout/hold -> limiter.

The ``action_executor`` node only converts messages and calls ``add_chunk``, ``set_measured``
and ``tick``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from action_diffusion_policy.runtime.ensembler import ChunkEnsembler, EnsemblerConfig
from action_diffusion_policy.runtime.safety import CommandLimiter


@dataclass
class TickStatus:
    """What one tick did (for diagnostics and logs)."""

    enabled: bool = True
    commanded: bool = False  # a command came out
    holding: bool = False
    hold_reason: str = ""  # disabled / estop / no_state / no_chunks / not_covered / timeout /
    #                        heartbeat_lost
    speed_scale: float = 1.0  # fraction of the velocity limit allowed this tick (start ramp)
    hold_duration: float = 0.0
    n_covering: int = 0
    chunk_age: float = math.inf  # now - stamp of the newest accepted chunk
    n_position_clipped: int = 0
    n_step_clipped: int = 0


class ExecutorCore:
    """One command per tick from a stream of chunks, within limits.

    ``lower``/``upper``/``max_velocity``: per commanded slot, unified units.
    ``chunk_timeout``: hold once the newest accepted chunk's stamp is older than this (s).
    ``future_tolerance``: refuse a chunk stamped more than this (s) ahead of the executor's
    clock (``add_chunk``'s ``now_s``): kept, it would hold as "not covered" and start moving
    the robot when its time comes, long after anyone expects (clock skew between hosts).
    ``rate_hz``: tick rate; the per-tick step limit is ``max_velocity / rate_hz``.

    Safety for real arms:
    ``start_ramp_s``/``start_speed_fraction``: the first motion after enabling (and after a
    reset or a lost heartbeat) may use only ``start_speed_fraction`` of the velocity limit,
    rising linearly to all of it over ``start_ramp_s`` seconds (0: no ramp).
    ``heartbeat_timeout``: > 0 makes a deadman heartbeat (``heartbeat(now_s)``) mandatory: once
    it is older than this the executor holds the last command (``heartbeat_lost``).
    ``estop()``: disables and latches until ``release_estop()`` and ``set_enabled(True)``.
    """

    def __init__(
        self,
        slot_indices,
        lower,
        upper,
        max_velocity,
        rate_hz: float,
        ensembler_config: EnsemblerConfig | None = None,
        chunk_timeout: float = 0.5,
        enabled: bool = True,
        future_tolerance: float = 0.5,
        start_ramp_s: float = 0.0,
        start_speed_fraction: float = 0.1,
        heartbeat_timeout: float = 0.0,
    ):
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"ExecutorCore: rate_hz={rate_hz!r} must be > 0")
        if not (chunk_timeout > 0):
            raise ValueError(f"ExecutorCore: chunk_timeout={chunk_timeout!r} must be > 0 s")
        if not (future_tolerance >= 0):
            raise ValueError(f"ExecutorCore: future_tolerance={future_tolerance!r} must be >= 0 s")
        if not start_ramp_s >= 0:
            raise ValueError(f"ExecutorCore: start_ramp_s={start_ramp_s!r} must be >= 0 s")
        if not 0 < start_speed_fraction <= 1:
            raise ValueError(
                f"ExecutorCore: start_speed_fraction={start_speed_fraction!r} must be in (0, 1]"
            )
        if not heartbeat_timeout >= 0:
            raise ValueError(
                f"ExecutorCore: heartbeat_timeout={heartbeat_timeout!r} must be >= 0 s "
                "(0: no heartbeat needed)"
            )
        self.start_ramp_s = float(start_ramp_s)
        self.start_speed_fraction = float(start_speed_fraction)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self._last_heartbeat = -math.inf
        self._motion_since: float | None = None  # first commanded tick since (re)starting
        self.estopped = False
        self.ensembler = ChunkEnsembler(slot_indices, ensembler_config)
        self.limiter = CommandLimiter(lower, upper, max_velocity)
        self.slot_indices = self.ensembler.slot_indices
        self.dt = 1.0 / rate_hz
        self.chunk_timeout = float(chunk_timeout)
        self.future_tolerance = float(future_tolerance)
        self.enabled = bool(enabled)
        self.measured: np.ndarray | None = None
        self._last_chunk_stamp = -math.inf
        self._last_now = -math.inf
        self._episode_start = -math.inf
        self.rejected_before_reset = 0
        self.rejected_future = 0
        self.time_jumps_back = 0

    def add_chunk(
        self,
        stamp_s: float,
        step_period_s: float,
        slot_indices,
        actions,
        now_s: float | None = None,
    ) -> str:
        """``"accepted"`` or why not: ``rejected_before_reset``, ``rejected_future`` (stamped
        more than ``future_tolerance`` after ``now_s``, the executor's clock; unchecked when
        None) or the ensembler's rejection keys."""
        if now_s is not None and not stamp_s <= now_s + self.future_tolerance:
            self.rejected_future += 1
            return "rejected_future"
        if stamp_s < self._episode_start:  # computed before new_episode(): in flight then
            self.rejected_before_reset += 1
            return "rejected_before_reset"
        result = self.ensembler.add_chunk(stamp_s, step_period_s, slot_indices, actions)
        if result == "accepted":
            self._last_chunk_stamp = max(self._last_chunk_stamp, stamp_s)
        return result

    def set_measured(self, values) -> None:
        """The robot's measured positions of the commanded slots; the first one (or the first
        after enabling) starts the limiter there."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size != self.slot_indices.size or not np.isfinite(values).all():
            return
        self.measured = values
        if not self.limiter.initialized:
            self.limiter.reset(values)

    def set_enabled(self, enabled: bool) -> bool:
        """Enable or disable; returns False (staying disabled) while the e-stop is latched."""
        if enabled and self.estopped:
            return False
        if enabled and not self.enabled:
            # Resume from where the robot is, not from the command held before disabling.
            self.restart_from_measured()
        self.enabled = bool(enabled)
        return True

    def estop(self) -> None:
        """Emergency stop: command nothing until released and enabled again."""
        self.estopped = True
        self.enabled = False

    def release_estop(self) -> None:
        """The e-stop is released; the executor stays disabled until ``set_enabled(True)``."""
        self.estopped = False

    def heartbeat(self, now_s: float) -> None:
        """The operator's deadman signal (only checked when ``heartbeat_timeout`` > 0)."""
        self._last_heartbeat = max(self._last_heartbeat, float(now_s))

    def _speed_scale(self, now_s: float) -> float:
        if self.start_ramp_s <= 0:
            return 1.0
        if self._motion_since is None:
            self._motion_since = now_s
        frac = min(1.0, max(0.0, now_s - self._motion_since) / self.start_ramp_s)
        return self.start_speed_fraction + (1.0 - self.start_speed_fraction) * frac

    def reset(self) -> None:
        """Forget chunks (time jumped back)."""
        self.ensembler.clear()
        self._last_chunk_stamp = -math.inf

    def new_episode(self, now_s: float) -> None:
        """The scene was reset: forget chunks, refuse any observed before ``now_s`` (still in
        flight from the last episode), and restart the step limiter from the next measured
        state instead of walking the arms back to the last episode's final command."""
        self.reset()
        self._episode_start = float(now_s)
        self.measured = None
        self.limiter.last = None
        self._motion_since = None

    def restart_from_measured(self) -> None:
        """Forget the last command: the next one starts from the measured state, with the start
        ramp again (on enabling, and when the driver went away and came back: the held command
        is no measurement of the arm)."""
        self.limiter.last = None
        if self.measured is not None:
            self.limiter.reset(self.measured)
        self._motion_since = None

    def preview(self, now_s: float, command, status: TickStatus, n_max: int,
                step_s: float) -> np.ndarray:  # fmt: skip
        """``command`` (this tick's, row 0) and the ensembled actions that follow it every
        ``step_s`` -> (n, k) with 1 <= n <= ``n_max``: the trajectory a controller may
        interpolate on its own. Each row is held to what the tick's own command obeys: the
        position limits and, from the row before, this tick's (ramped) velocity limit. Rows
        stop where no chunk covers the time; a held command is streamed alone."""
        command = np.asarray(command, dtype=np.float64).reshape(1, -1)
        if status.holding or n_max <= 1:
            return command
        future = self.ensembler.preview(now_s + step_s * np.arange(1, n_max))
        covered = np.isfinite(future).all(axis=1)
        n = int(np.argmin(covered)) if not covered.all() else future.shape[0]
        lim = self.limiter
        future = np.clip(future[:n], lim.lower, lim.upper)
        max_step = lim.max_velocity * status.speed_scale * step_s
        previous = command[0]
        for row in future:  # <= n_max rows: the step limit depends on the row before
            np.clip(row, previous - max_step, previous + max_step, out=row)
            previous = row
        return np.concatenate([command, future])

    def tick(self, now_s: float) -> tuple[np.ndarray | None, TickStatus]:
        status = TickStatus(enabled=self.enabled)
        if now_s < self._last_now - 1.0:  # simulated time restarted
            self.time_jumps_back += 1
            self.reset()
        self._last_now = now_s
        if not self.enabled:
            status.hold_reason = "estop" if self.estopped else "disabled"
            return None, status

        action, info = self.ensembler.action_at(now_s)
        status.n_covering = info.n_covering
        status.chunk_age = now_s - self._last_chunk_stamp
        hold_reason = info.reason
        if action is not None and status.chunk_age > self.chunk_timeout:
            action, hold_reason = None, "timeout"
        if self.heartbeat_timeout > 0:
            alive = now_s - self._last_heartbeat <= self.heartbeat_timeout
            if not alive:
                action, hold_reason = None, "heartbeat_lost"
                self._motion_since = None  # when it returns: the start ramp again
        scale = 1.0
        if action is not None and self.limiter.initialized:
            scale = status.speed_scale = self._speed_scale(now_s)
        command, lim = self.limiter.step(action, self.dt, now_s, hold_reason=hold_reason or "",
                                         speed_scale=scale)  # fmt: skip
        status.holding, status.hold_reason = lim.holding, lim.hold_reason
        status.hold_duration = lim.hold_duration
        status.n_position_clipped = lim.n_position_clipped
        status.n_step_clipped = lim.n_step_clipped
        status.commanded = command is not None
        return command, status
