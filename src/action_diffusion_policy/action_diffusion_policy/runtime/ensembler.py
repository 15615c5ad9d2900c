"""Turn a stream of overlapping action chunks into one action per control tick.

Every chunk carries the stamp of the observation it was conditioned on and its step period:
action ``i`` is meant for ``stamp + i * step_period``. At time ``now`` the chunk's row is

    index = floor((now - stamp) / step_period + eps)

so the actions whose time passed while the policy was thinking are skipped (latency
compensation). Chunks whose last row lies in the past are dropped.

Strategies:

- ``temporal_ensembling`` (ACT, Zhao et al. 2023): every chunk covering ``now`` votes with
  weight ``w_i = exp(-k * i)``, normalized, ``i = 0`` the oldest chunk (smallest stamp).
- ``receding_horizon`` (Diffusion Policy, Chi et al. 2023): execute the newest chunk; switch to
  a newer one only after ``receding_steps`` of the current chunk's steps have been executed.
- ``rtc`` (real-time chunking, Black et al. 2025): execute the newest chunk from the moment it
  arrives. The policy inpainted its first rows from the chunk executed meanwhile, so the switch
  is continuous (``ActionChunkPolicy.predict_chunk(prefix=..., delay=...)``).

Chunks live in preallocated arrays so a tick is a handful of vectorized numpy operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

STRATEGIES = ("temporal_ensembling", "receding_horizon", "rtc")

# Rejection / drop reasons, the keys of ChunkEnsembler.counters.
COUNTER_KEYS = (
    "accepted",
    "rejected_nonfinite",
    "rejected_slots",
    "rejected_malformed",
    "dropped_expired",
    "evicted",
    "replaced",
)


@dataclass(frozen=True)
class EnsemblerConfig:
    """How chunks are combined.

    strategy: ``temporal_ensembling``, ``receding_horizon`` or ``rtc``.
    ensembling_k: decay of the temporal-ensembling weights ``exp(-k i)``, ``i = 0`` the oldest
        chunk (ACT uses 0.01, a slight preference for older chunks); k < 0 prefers the newer
        chunks, whose observations are fresher when the policy takes several control steps.
    receding_steps: chunk steps executed before switching to a newer chunk; >= 1.
    max_chunks: chunks kept at once (the oldest is evicted beyond this); >= 1.
    index_eps: tolerance, in steps, added before flooring the row index (absorbs float error).
    """

    strategy: str = "temporal_ensembling"
    ensembling_k: float = 0.01
    receding_steps: int = 8
    max_chunks: int = 32
    index_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"EnsemblerConfig.strategy={self.strategy!r}: must be one of {STRATEGIES}"
            )
        if not math.isfinite(self.ensembling_k):
            raise ValueError(f"EnsemblerConfig.ensembling_k={self.ensembling_k!r}: must be finite")
        if int(self.receding_steps) != self.receding_steps or self.receding_steps < 1:
            raise ValueError(
                f"EnsemblerConfig.receding_steps={self.receding_steps!r}: must be an integer >= 1"
            )
        if int(self.max_chunks) != self.max_chunks or self.max_chunks < 1:
            raise ValueError(
                f"EnsemblerConfig.max_chunks={self.max_chunks!r}: must be an integer >= 1"
            )
        if not (0.0 <= self.index_eps < 0.5):
            raise ValueError(f"EnsemblerConfig.index_eps={self.index_eps!r}: must be in [0, 0.5)")


@dataclass
class TickInfo:
    """What one ``action_at`` call did (for diagnostics)."""

    n_chunks: int = 0  # chunks held after dropping expired ones
    n_covering: int = 0  # chunks that have a row for "now"
    newest_stamp: float | None = None  # stamp of the newest contributing chunk
    reason: str = ""  # "" when an action came out, else "no_chunks" / "not_covered"
    stamps: list[float] = field(default_factory=list)  # stamps of the contributing chunks
    indices: list[int] = field(default_factory=list)  # their row indices, same order
    weights: list[float] = field(default_factory=list)  # their weights, same order


class ChunkEnsembler:
    """Aligns chunks by stamp and step period and combines those covering "now".

    ``slot_indices``: the unified slots the executor commands (the embodiment's action slots).
    A chunk must carry each of them; extra columns are ignored, a missing one rejects the chunk.
    """

    def __init__(self, slot_indices, config: EnsemblerConfig | None = None, horizon: int = 64):
        self.config = config or EnsemblerConfig()
        slots = np.asarray(slot_indices, dtype=np.int64).reshape(-1)
        if slots.size == 0:
            raise ValueError("ChunkEnsembler: slot_indices is empty; need the commanded slots")
        self.slot_indices = slots
        self.counters = dict.fromkeys(COUNTER_KEYS, 0)
        self._weight_cache: dict[int, np.ndarray] = {}
        self._allocate(max(1, int(horizon)))
        self.clear()

    # --- storage -------------------------------------------------------------------------
    def _allocate(self, horizon: int) -> None:
        n, k = self.config.max_chunks, self.slot_indices.size
        self._actions = np.zeros((n, horizon, k), dtype=np.float64)
        self._stamps = np.zeros(n, dtype=np.float64)
        self._periods = np.ones(n, dtype=np.float64)
        self._horizons = np.zeros(n, dtype=np.int64)
        self._valid = np.zeros(n, dtype=bool)

    def _grow(self, horizon: int) -> None:
        old = (self._actions, self._stamps, self._periods, self._horizons, self._valid)
        self._allocate(horizon)
        h_old = old[0].shape[1]
        self._actions[:, :h_old] = old[0]
        self._stamps[:], self._periods[:], self._horizons[:], self._valid[:] = old[1:]

    def clear(self) -> None:
        """Forget every chunk (e.g. on a new episode or when disabled)."""
        self._valid[:] = False
        self._current = -1  # receding horizon: storage row of the chunk being executed
        self._current_stamp = math.nan
        self._start_index = 0  # its row index when it was first executed

    @property
    def n_chunks(self) -> int:
        return int(self._valid.sum())

    @property
    def newest_stamp(self) -> float | None:
        if not self._valid.any():
            return None
        return float(self._stamps[self._valid].max())

    # --- input ---------------------------------------------------------------------------
    def add_chunk(self, stamp_s: float, step_period_s: float, slot_indices, actions) -> str:
        """Store one chunk. Returns ``"accepted"`` or the counter key of the rejection."""
        actions = np.asarray(actions)
        slots = np.asarray(slot_indices, dtype=np.int64).reshape(-1)
        if (
            actions.ndim != 2
            or actions.shape[0] < 1
            or actions.shape[1] != slots.size
            or not math.isfinite(stamp_s)
            or not (math.isfinite(step_period_s) and step_period_s > 0.0)
        ):
            return self._count("rejected_malformed")
        columns = self._columns_for(slots)
        if columns is None:
            return self._count("rejected_slots")
        selected = actions[:, columns]
        if not np.isfinite(selected).all():
            return self._count("rejected_nonfinite")

        horizon = selected.shape[0]
        if horizon > self._actions.shape[1]:
            self._grow(horizon)
        row = self._row_for(stamp_s)
        self._actions[row, :horizon] = selected
        self._stamps[row] = stamp_s
        self._periods[row] = step_period_s
        self._horizons[row] = horizon
        self._valid[row] = True
        return self._count("accepted")

    def _columns_for(self, slots: np.ndarray) -> np.ndarray | None:
        if slots.size == self.slot_indices.size and np.array_equal(slots, self.slot_indices):
            return np.arange(slots.size)
        order = np.argsort(slots, kind="stable")
        pos = np.searchsorted(slots[order], self.slot_indices)
        pos = np.clip(pos, 0, slots.size - 1)
        columns = order[pos]
        if not np.array_equal(slots[columns], self.slot_indices):
            return None
        return columns

    def _row_for(self, stamp_s: float) -> int:
        same = np.flatnonzero(self._valid & (self._stamps == stamp_s))
        if same.size:  # a re-sent chunk for the same observation replaces the old one
            self.counters["replaced"] += 1
            if same[0] == self._current:
                self._current = -1
            return int(same[0])
        free = np.flatnonzero(~self._valid)
        if free.size:
            return int(free[0])
        oldest = int(np.argmin(self._stamps))
        self.counters["evicted"] += 1
        if oldest == self._current:
            self._current = -1
        return oldest

    def _count(self, key: str) -> str:
        self.counters[key] += 1
        return key

    # --- output --------------------------------------------------------------------------
    def action_at(self, now_s: float) -> tuple[np.ndarray | None, TickInfo]:
        """The combined action for time ``now_s`` (shape (k,)), or None when nothing covers it.

        Few numpy calls on purpose: with ~13 chunks each call costs more than its arithmetic.
        """
        info = TickInfo()
        valid = self._valid
        index = (now_s - self._stamps) / self._periods
        index += self.config.index_eps
        index = np.floor(index, out=index).astype(np.int64)
        expired = valid & (index >= self._horizons)
        if expired.any():
            self.counters["dropped_expired"] += int(np.count_nonzero(expired))
            valid &= ~expired
            if self._current >= 0 and expired[self._current]:
                self._current = -1
        rows = np.flatnonzero(valid & (index >= 0))
        info.n_chunks = int(np.count_nonzero(valid))
        info.n_covering = n = int(rows.size)
        if n == 0:
            info.reason = "not_covered" if info.n_chunks else "no_chunks"
            return None, info

        if self.config.strategy == "temporal_ensembling":
            if n > 1:
                rows = rows[self._stamps[rows].argsort(kind="stable")]  # oldest first
            idx = index[rows]
            weights = self._weights(n)
            action = weights @ self._actions[rows, idx]
            info.stamps = self._stamps[rows].tolist()
            info.indices = idx.tolist()
            info.weights = weights.tolist()
            info.newest_stamp = info.stamps[-1]
        else:
            row = (self._newest(rows) if self.config.strategy == "rtc"
                   else self._receding_row(rows, index))  # fmt: skip
            action = self._actions[row, index[row]].copy()
            info.stamps, info.indices = [float(self._stamps[row])], [int(index[row])]
            info.weights = [1.0]
            info.newest_stamp = float(self._stamps[rows].max())
        return action, info

    def preview(self, times_s) -> np.ndarray:
        """The combined actions at future ``times_s`` (T,) -> (T, k), NaN rows where nothing
        covers a time. No side effects (nothing expires, the receding choice stays), so the
        executor can stream the rest of the chunk to a trajectory controller.

        Temporal ensembling weighs the chunks covering each time as ``action_at`` does;
        receding horizon continues the chunk executed now (the newest covering one when none
        is).
        """
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        k = self.slot_indices.size
        out = np.full((times.size, k), np.nan)
        rows = np.flatnonzero(self._valid)
        if rows.size == 0 or times.size == 0:
            return out
        if self.config.strategy != "temporal_ensembling":
            current = self._current
            if self.config.strategy == "rtc" or current < 0 or not self._valid[current]:
                current = self._newest(rows)
            rows = np.array([current])
        rows = rows[self._stamps[rows].argsort(kind="stable")]  # oldest first
        index = (times[None, :] - self._stamps[rows, None]) / self._periods[rows, None]
        index = np.floor(index + self.config.index_eps).astype(np.int64)  # (N, T)
        covering = (index >= 0) & (index < self._horizons[rows, None])
        rank = np.cumsum(covering, axis=0) - 1  # 0 = the oldest covering chunk at that time
        weights = np.where(covering, np.exp(-self.config.ensembling_k * rank), 0.0)
        total = weights.sum(axis=0)
        gathered = self._actions[rows[:, None], np.clip(index, 0, self._actions.shape[1] - 1)]
        covered = total > 0
        out[covered] = (
            np.einsum("nt,ntk->tk", weights[:, covered], gathered[:, covered])
            / total[covered, None]
        )
        return out

    def _weights(self, n: int) -> np.ndarray:
        """ACT weights exp(-k i), i = 0 the oldest, normalized; cached per count."""
        weights = self._weight_cache.get(n)
        if weights is None:
            weights = np.exp(-self.config.ensembling_k * np.arange(n))
            weights /= weights.sum()
            self._weight_cache[n] = weights
        return weights

    def _newest(self, rows: np.ndarray) -> int:
        """The storage row of the newest chunk (largest stamp) among ``rows``."""
        return int(rows[np.argmax(self._stamps[rows])])

    def _receding_row(self, covering: np.ndarray, index: np.ndarray) -> int:
        newest = self._newest(covering)
        current = self._current
        still_current = current >= 0 and current in covering
        if still_current and self._stamps[current] != self._current_stamp:
            still_current = False  # the row was reused by another chunk
        if still_current:
            executed = int(index[current]) - self._start_index
            newer = self._stamps[newest] > self._stamps[current]
            if not (newer and executed >= self.config.receding_steps):
                return current
        self._current = newest
        self._current_stamp = float(self._stamps[newest])
        self._start_index = int(index[newest])
        return newest
