"""Resampling asynchronous topics onto the control clock.

The rule (the same for every input: cameras, joint states, commands, object poses):

1. The control clock ticks at the embodiment's control frequency ``f``:
   ``t_k = t_0 + k / f`` with ``t_0`` the first instant at which every required input has
   produced a sample, up to the last instant at which every input still has one
   (``min`` over inputs of their last sample).
2. At each tick, every input takes its **latest sample at or before the tick**
   (``stamp <= t_k``); a sample stamped after the tick is never used, so no tick sees the future.
3. A tick is **dropped** when any input's sample is older than the tolerance
   (``t_k - stamp > max_staleness``); dropped ticks are counted per input and reported.
   Kept ticks that are consecutive on the clock form one segment; a gap splits the episode.

Stamps are integers in nanoseconds; samples need not arrive sorted (they are sorted here).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Resampled:
    """Result of :func:`resample`: per-input sample index of every kept tick."""

    ticks: np.ndarray  # (K,) int64 ns, kept ticks only
    indices: dict[str, np.ndarray]  # input -> (K,) int64 index into that input's samples
    tick_numbers: np.ndarray  # (K,) int64 k of each kept tick (gaps where ticks were dropped)
    total_ticks: int
    stale: dict[str, int] = field(default_factory=dict)  # ticks dropped because of this input

    @property
    def dropped(self) -> int:
        return self.total_ticks - len(self.ticks)

    def segments(self) -> list[slice]:
        """Runs of consecutive kept ticks, as slices into the kept arrays."""
        if len(self.tick_numbers) == 0:
            return []
        breaks = np.flatnonzero(np.diff(self.tick_numbers) != 1) + 1
        bounds = [0, *breaks.tolist(), len(self.tick_numbers)]
        return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def sort_stamps(stamps) -> tuple[np.ndarray, np.ndarray]:
    """(sorted stamps, order) with a stable sort, so equal stamps keep arrival order."""
    stamps = np.asarray(stamps, dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    return stamps[order], order


def latest_at_or_before(sorted_stamps: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Index of the latest sample with stamp <= tick, or -1 where there is none.

    Among equal stamps the last one (the most recent arrival) wins.
    """
    return np.searchsorted(sorted_stamps, ticks, side="right") - 1


def control_ticks(start_ns: int, end_ns: int, frequency: float) -> np.ndarray:
    if frequency <= 0:
        raise ValueError(f"control frequency must be > 0, got {frequency}")
    period = 1e9 / frequency
    if end_ns < start_ns:
        return np.zeros(0, dtype=np.int64)
    n = int(np.floor((end_ns - start_ns) / period + 1e-9)) + 1
    return start_ns + np.round(np.arange(n) * period).astype(np.int64)


def resample(
    streams: Mapping[str, np.ndarray],
    frequency: float,
    max_staleness_s: float,
) -> Resampled:
    """Apply the rule of this module to ``streams`` (input name -> sorted stamps in ns)."""
    if max_staleness_s <= 0:
        raise ValueError(f"max_staleness must be > 0 s, got {max_staleness_s}")
    empty = [k for k, s in streams.items() if len(s) == 0]
    if empty:
        raise ValueError(f"inputs without any sample: {', '.join(empty)}")
    for name, s in streams.items():
        if np.any(np.diff(s) < 0):
            raise ValueError(f"stamps of {name} are not sorted; use sort_stamps() first")
    start = max(int(s[0]) for s in streams.values())
    end = min(int(s[-1]) for s in streams.values())
    ticks = control_ticks(start, end, frequency)
    keep = np.ones(len(ticks), dtype=bool)
    idx, stale = {}, {}
    limit = round(max_staleness_s * 1e9)
    for name, s in streams.items():
        i = latest_at_or_before(s, ticks)
        ok = (i >= 0) & (ticks - s[np.maximum(i, 0)] <= limit)
        stale[name] = int((~ok).sum())
        keep &= ok
        idx[name] = i
    return Resampled(
        ticks=ticks[keep],
        indices={k: v[keep] for k, v in idx.items()},
        tick_numbers=np.flatnonzero(keep).astype(np.int64),
        total_ticks=len(ticks),
        stale=stale,
    )
