"""On-disk training dataset: memory-mapped ``.npy`` arrays plus ``meta.json``.

Layout (one directory per dataset)::

    meta.json               format version, embodiment, episodes, normalization stats, ...
    state.npy               (N, 128) float32   unified state per control tick
    action.npy              (N, 128) float32   unified action per control tick
    env_state.npy           (N, D)   float32   optional privileged object pose
    images/<camera>.npy     (N, H, W, 3) uint8 RGB frames
    episode_ends.npy        (E,)     int64     exclusive end index of each episode

Why plain ``.npy``: ``np.load(mmap_mode="r")`` gives zero-copy random access from many
DataLoader workers with no extra dependency, and every array is readable by any tool.

Writes go to ``<dir>.tmp-<pid>`` and are renamed into place on ``close()``, so an interrupted
build never leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from unified_action_space.layout import NUM_SLOTS  # defined once, with the unified layout

FORMAT_VERSION = 1
META_FILE = "meta.json"


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete or inconsistent."""


@dataclass
class EpisodeInfo:
    """One episode's slice of the arrays and what was recorded about it."""

    start: int
    length: int
    task: str = ""
    instruction: str = ""
    success: bool = False
    source: str = ""


@dataclass
class DatasetMeta:
    """Everything about a dataset that is not a per-frame array."""

    embodiment: str
    control_frequency: float
    camera_names: list[str]
    image_size: tuple[int, int] | None  # (H, W); None when there are no cameras
    state_mask: list[bool]  # 128 entries
    action_slots: list[int]  # slots the action is defined on (increasing)
    env_state_dim: int = 0
    action_source: str = "command"  # "command" or "next_state"
    episodes: list[EpisodeInfo] = field(default_factory=list)
    stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def to_json(self) -> dict:
        d = asdict(self)
        d["num_frames"] = self.num_frames
        return d

    @classmethod
    def from_json(cls, d: dict, path: Path) -> DatasetMeta:
        d = dict(d)
        d.pop("num_frames", None)
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise DatasetError(
                f"{path}: format_version is {version!r}, this code reads {FORMAT_VERSION}; "
                "rebuild the dataset with this version of the dataset builder"
            )
        try:
            d["episodes"] = [EpisodeInfo(**e) for e in d.get("episodes", [])]
            if d.get("image_size") is not None:
                d["image_size"] = tuple(d["image_size"])
            return cls(**d)
        except TypeError as exc:
            raise DatasetError(f"{path}: unexpected or missing key in meta.json: {exc}") from exc


def compute_stats(x: np.ndarray) -> dict[str, list[float]]:
    """Per-column mean/std/min/max of a (N, D) array, in float64 for accuracy."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        raise DatasetError("cannot compute statistics of an empty dataset")
    return {
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
    }


class DatasetWriter:
    """Append episodes, then ``close()`` to compute statistics and move the dataset into place.

    Arrays are buffered per episode in memory and appended to growing files, so a dataset larger
    than RAM can be written as long as one episode fits.
    """

    def __init__(self, path: str | os.PathLike, meta: DatasetMeta, force: bool = False):
        self.path = Path(path)
        if self.path.exists() and not force:
            raise FileExistsError(
                f"{self.path} already exists; pass force=True (--force) to overwrite it"
            )
        if len(meta.state_mask) != NUM_SLOTS:
            raise DatasetError(
                f"state_mask has {len(meta.state_mask)} entries, expected {NUM_SLOTS}"
            )
        self.meta = meta
        self.meta.episodes = []
        self.force = force
        self.tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        (self.tmp / "images").mkdir(parents=True)
        self._files: dict[str, object] = {}
        self._shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._n = 0
        self._closed = False

    def _append(self, key: str, arr: np.ndarray, dtype) -> None:
        arr = np.ascontiguousarray(arr, dtype=dtype)
        shape = (arr.shape[1:], arr.dtype)
        if key not in self._files:
            self._files[key] = open(self.tmp / f"{key}.raw", "wb")  # noqa: SIM115 - closed in close()
            self._shapes[key] = shape
        elif self._shapes[key] != shape:
            raise DatasetError(
                f"{key}: frame shape/dtype {shape} differs from earlier episodes "
                f"{self._shapes[key]}"
            )
        self._files[key].write(arr.tobytes())

    def add_episode(
        self,
        state: np.ndarray,
        action: np.ndarray,
        images: dict[str, np.ndarray] | None = None,
        env_state: np.ndarray | None = None,
        task: str = "",
        instruction: str = "",
        success: bool = False,
        source: str = "",
    ) -> None:
        """Append one episode. ``state``/``action`` are (T, 128); images (T, H, W, 3) uint8."""
        n = len(state)
        if n == 0:
            raise DatasetError(f"episode from {source or '?'} has no frames")
        if state.shape != (n, NUM_SLOTS) or action.shape != (n, NUM_SLOTS):
            raise DatasetError(
                f"episode from {source or '?'}: state {state.shape} and action {action.shape} "
                f"must both be ({n}, {NUM_SLOTS})"
            )
        for name, arr in (("state", state), ("action", action)):
            if not np.isfinite(arr).all():
                raise DatasetError(f"episode from {source or '?'}: {name} holds NaN or inf")
        images = images or {}
        if sorted(images) != sorted(self.meta.camera_names):
            raise DatasetError(
                f"episode from {source or '?'}: cameras {sorted(images)} but the dataset "
                f"declares {sorted(self.meta.camera_names)}"
            )
        self._append("state", state, np.float32)
        self._append("action", action, np.float32)
        if self.meta.env_state_dim:
            if env_state is None or env_state.shape != (n, self.meta.env_state_dim):
                got = None if env_state is None else env_state.shape
                raise DatasetError(
                    f"episode from {source or '?'}: env_state is {got}, "
                    f"expected ({n}, {self.meta.env_state_dim})"
                )
            self._append("env_state", env_state, np.float32)
        for cam, frames in images.items():
            h, w = self.meta.image_size
            if frames.shape != (n, h, w, 3) or frames.dtype != np.uint8:
                raise DatasetError(
                    f"episode from {source or '?'}: camera {cam} frames are "
                    f"{frames.shape} {frames.dtype}, expected ({n}, {h}, {w}, 3) uint8"
                )
            self._append(f"images/{cam}", frames, np.uint8)
        self.meta.episodes.append(
            EpisodeInfo(self._n, n, task, instruction, bool(success), str(source))
        )
        self._n += n

    def close(self) -> Path:
        """Finish the arrays, compute normalization statistics and rename into place."""
        if self._closed:
            return self.path
        if self._n == 0:
            self.abort()
            raise DatasetError(f"{self.path}: no episodes were added")
        for key, f in self._files.items():
            f.close()
            frame_shape, dtype = self._shapes[key]
            raw = self.tmp / f"{key}.raw"
            data = np.memmap(raw, dtype=dtype, mode="r", shape=(self._n, *frame_shape))
            out = np.lib.format.open_memmap(
                self.tmp / f"{key}.npy", mode="w+", dtype=dtype, shape=data.shape
            )
            out[:] = data
            out.flush()
            del out, data
            raw.unlink()
        ends = np.cumsum([e.length for e in self.meta.episodes]).astype(np.int64)
        np.save(self.tmp / "episode_ends.npy", ends)
        state = np.load(self.tmp / "state.npy", mmap_mode="r")
        action = np.load(self.tmp / "action.npy", mmap_mode="r")
        self.meta.stats = {"state": compute_stats(state), "action": compute_stats(action)}
        if self.meta.env_state_dim:
            env = np.load(self.tmp / "env_state.npy", mmap_mode="r")
            self.meta.stats["env_state"] = compute_stats(env)
        with open(self.tmp / META_FILE, "w") as f:
            json.dump(self.meta.to_json(), f, indent=1)
        if self.path.exists():
            shutil.rmtree(self.path)  # only reachable with force=True
        os.replace(self.tmp, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written so far."""
        for f in self._files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class DatasetReader:
    """Memory-mapped, read-only view of a dataset directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise DatasetError(
                f"{self.path} is not a dataset (no {META_FILE}); build one with the dataset builder"
            )
        with open(meta_path) as f:
            self.meta = DatasetMeta.from_json(json.load(f), meta_path)
        self.state = self._load("state.npy")
        self.action = self._load("action.npy")
        self.episode_ends = self._load("episode_ends.npy")
        self.env_state = self._load("env_state.npy") if self.meta.env_state_dim else None
        self.images = {c: self._load(f"images/{c}.npy") for c in self.meta.camera_names}
        n = self.meta.num_frames
        for name, arr in [("state", self.state), ("action", self.action)] + [
            (f"images/{c}", a) for c, a in self.images.items()
        ]:
            if len(arr) != n:
                raise DatasetError(f"{self.path / name}.npy has {len(arr)} frames, meta says {n}")

    def _load(self, name: str) -> np.ndarray:
        p = self.path / name
        if not p.is_file():
            raise DatasetError(f"{p} is missing; the dataset is incomplete, rebuild it")
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise DatasetError(f"{p} is corrupt: {exc}") from exc

    @property
    def num_frames(self) -> int:
        return self.meta.num_frames

    @property
    def num_episodes(self) -> int:
        return len(self.meta.episodes)

    def episode_slice(self, i: int) -> slice:
        e = self.meta.episodes[i]
        return slice(e.start, e.start + e.length)
