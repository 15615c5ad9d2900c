"""Per-source histories keyed by stamp, and the rule that turns them into one observation.

Sources: one stream per camera, the unified state, and (optionally) the privileged env state.
The rule matches the dataset builder's resampling, so the policy sees at run time what it saw
in training:

- the observation time ``t0`` is the newest time every source has reached: the minimum over
  sources of their newest stamp (usually the newest camera frame), so a slower or later-arriving
  source delays the observation instead of making it fail; ``t0`` is also the stamp of the
  newest input the observation uses;
- history step ``j`` (``j = 0`` newest) is at ``t0 - j * obs_period``; each source contributes
  its latest message stamped at or before that time, never a future one;
- every contribution must be at most ``stamp_tolerance`` older than its step time, so all
  messages of one step lie within the tolerance of each other; otherwise no observation;
- at the start of an episode a history older than the first message is padded with the oldest
  message (as Diffusion Policy pads at reset).

Messages older than the newest of their stream (out of order) or stamped more than
``future_tolerance`` after the receiver's clock are dropped and counted.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

STATE = "state"
ENV_STATE = "env_state"


@dataclass(frozen=True)
class BufferConfig:
    """camera_names: cameras in the checkpoint's order. n_obs_steps: history length T >= 1.
    obs_period: seconds between history steps (1 / control frequency), > 0.
    stamp_tolerance: max age of a contribution relative to its step time (s), >= 0.
    future_tolerance: messages stamped later than now + this are dropped (s), >= 0.
    use_env_state: also require the privileged env state."""

    camera_names: tuple[str, ...]
    n_obs_steps: int
    obs_period: float
    stamp_tolerance: float = 0.05
    future_tolerance: float = 0.1
    use_env_state: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera_names", tuple(self.camera_names))
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"BufferConfig.camera_names={self.camera_names}: duplicates")
        if {STATE, ENV_STATE} & set(self.camera_names):
            raise ValueError(
                f"BufferConfig.camera_names={self.camera_names}: '{STATE}'/'{ENV_STATE}' reserved"
            )
        if int(self.n_obs_steps) != self.n_obs_steps or self.n_obs_steps < 1:
            raise ValueError(f"BufferConfig.n_obs_steps={self.n_obs_steps!r}: integer >= 1")
        if not (math.isfinite(self.obs_period) and self.obs_period > 0):
            raise ValueError(f"BufferConfig.obs_period={self.obs_period!r}: must be > 0")
        for name in ("stamp_tolerance", "future_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"BufferConfig.{name}={value!r}: must be finite and >= 0")


class _Entry:
    __slots__ = ("decoded", "payload", "stamp")

    def __init__(self, stamp: float, payload):
        self.stamp = stamp
        self.payload = payload
        self.decoded = None  # decoded image, cached for reuse by later observations


class _Stream:
    def __init__(self):
        self.entries: deque[_Entry] = deque()
        self.stamps: deque[float] = deque()

    def push(self, stamp: float, payload) -> None:
        self.entries.append(_Entry(stamp, payload))
        self.stamps.append(stamp)

    def prune(self, older_than: float) -> None:
        # Keep one entry at or before the cut so padding/look-ups still find something.
        while len(self.stamps) > 1 and self.stamps[1] <= older_than:
            self.entries.popleft()
            self.stamps.popleft()

    def at_or_before(self, t: float) -> _Entry | None:
        i = bisect.bisect_right(self.stamps, t)
        return self.entries[i - 1] if i else None


@dataclass
class Selection:
    """The messages chosen for one observation: per source, T entries oldest first."""

    stamp: float
    entries: dict[str, list[_Entry]]


@dataclass
class AssembledObservation:
    """Arrays ready for the policy, plus the stamps that made them."""

    stamp: float  # observation time t0 (the newest input stamp used)
    images: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8, oldest first
    state: np.ndarray  # (T, 128) float32
    state_mask: np.ndarray  # (128,) bool
    env_state: np.ndarray | None  # (T, D) float32
    source_stamps: dict[str, list[float]] = field(default_factory=dict)

    @property
    def oldest_input_stamp(self) -> float:
        return min(s[-1] for s in self.source_stamps.values())

    def to_observation(self, control_frequency: float, lang_embedding=None):
        from action_diffusion_policy.types import Observation  # the policy core's type

        return Observation(
            images=self.images,
            state=self.state,
            state_mask=self.state_mask,
            env_state=self.env_state,
            lang_embedding=lang_embedding,
            control_frequency=float(control_frequency),
        )


class ObservationBuffer:
    """Not thread-safe; the node guards it with a lock (``select`` is cheap, ``build`` is not
    and may run outside the lock)."""

    def __init__(self, config: BufferConfig):
        self.config = config
        self.sources = (*config.camera_names, STATE) + (
            (ENV_STATE,) if config.use_env_state else ()
        )
        self._streams = {name: _Stream() for name in self.sources}
        self._keep_s = (config.n_obs_steps - 1) * config.obs_period + config.stamp_tolerance + 1.0
        self.counters = {"accepted": 0, "out_of_order": 0, "future": 0, "unknown_source": 0}

    def clear(self) -> None:
        for stream in self._streams.values():
            stream.entries.clear()
            stream.stamps.clear()

    def add(self, source: str, stamp_s: float, payload, now_s: float) -> str:
        """Store one message; returns ``"accepted"`` or the counter key of the drop."""
        stream = self._streams.get(source)
        if stream is None:
            return self._count("unknown_source")
        if not math.isfinite(stamp_s) or stamp_s > now_s + self.config.future_tolerance:
            return self._count("future")
        if stream.stamps and stamp_s <= stream.stamps[-1]:
            return self._count("out_of_order")
        stream.push(stamp_s, payload)
        stream.prune(stamp_s - self._keep_s)
        return self._count("accepted")

    def add_image(self, camera: str, stamp_s: float, payload, now_s: float) -> str:
        if camera not in self.config.camera_names:
            return self._count("unknown_source")
        return self.add(camera, stamp_s, payload, now_s)

    def add_state(self, stamp_s: float, values, mask, now_s: float) -> str:
        return self.add(STATE, stamp_s, (values, mask), now_s)

    def add_env_state(self, stamp_s: float, values, now_s: float) -> str:
        return self.add(ENV_STATE, stamp_s, values, now_s)

    def _count(self, key: str) -> str:
        self.counters[key] += 1
        return key

    def newest_stamp(self) -> float | None:
        stamps = [s.stamps[-1] for s in self._streams.values() if s.stamps]
        return max(stamps) if stamps else None

    def newest_stamps(self) -> dict[str, float | None]:
        return {n: (s.stamps[-1] if s.stamps else None) for n, s in self._streams.items()}

    def select(self) -> tuple[Selection | None, str]:
        """Choose the messages of the newest observation; (None, reason) when there is none."""
        for name in self.sources:
            if not self._streams[name].stamps:
                return None, f"waiting_for_{name}"
        cfg = self.config
        t0 = min(self._streams[name].stamps[-1] for name in self.sources)
        chosen: dict[str, list[_Entry]] = {}
        for name in self.sources:
            stream = self._streams[name]
            picks = []
            for j in range(cfg.n_obs_steps - 1, -1, -1):  # oldest first
                t = t0 - j * cfg.obs_period
                if j > 0 and t < stream.stamps[0]:
                    entry = stream.entries[0]  # history shorter than T: pad with the oldest
                else:
                    entry = stream.at_or_before(t)
                    if entry is None or t - entry.stamp > cfg.stamp_tolerance + 1e-9:
                        return None, f"stale_{name}"
                picks.append(entry)
            chosen[name] = picks
        return Selection(stamp=t0, entries=chosen), ""

    def build(
        self, selection: Selection, decode_image: Callable | None = None
    ) -> AssembledObservation:
        """Arrays from a selection; ``decode_image(payload) -> (H, W, 3) uint8`` (cached)."""
        images = {}
        for cam in self.config.camera_names:
            frames = []
            for entry in selection.entries[cam]:
                if entry.decoded is None:
                    entry.decoded = decode_image(entry.payload) if decode_image else entry.payload
                frames.append(entry.decoded)
            images[cam] = np.stack(frames)
        state_entries = selection.entries[STATE]
        state = np.stack([np.asarray(e.payload[0], dtype=np.float32) for e in state_entries])
        mask = np.asarray(state_entries[-1].payload[1], dtype=bool)
        env_state = None
        if self.config.use_env_state:
            env_state = np.stack(
                [np.asarray(e.payload, dtype=np.float32) for e in selection.entries[ENV_STATE]]
            )
        return AssembledObservation(
            stamp=selection.stamp,
            images=images,
            state=state,
            state_mask=mask,
            env_state=env_state,
            source_stamps={k: [e.stamp for e in v] for k, v in selection.entries.items()},
        )

    def assemble(self, decode_image: Callable | None = None):
        """``select`` then ``build``: (AssembledObservation | None, reason)."""
        selection, reason = self.select()
        if selection is None:
            return None, reason
        return self.build(selection, decode_image), ""
