"""Build a training dataset from rosbag2 bags (ours or ``ros2 bag record``; sqlite3 or MCAP).

    build_dataset BAG_OR_DIR [...] -o OUT [--embodiment NAME] [--action-source command|next_state]
        [--image-size H W] [--cameras NAME ...] [--max-staleness S] [--time-source header|log]
        [--frequency HZ] [--no-env-state] [--only-success] [--on-gap split|skip] [--repair]
        [--force]

A directory that is not itself a bag is searched one level deep for bags (sorted by name). An
unclosed recording (an ``.mcap`` without ``metadata.yaml``: a killed recorder) is an error that
says how to recover it, unless its repaired copy ``NAME.repaired`` is there (then that is used)
or ``--repair`` is given (then :mod:`.repair_bag` makes that copy first).

Gaps: a tick whose input is older than ``--max-staleness`` (a camera that died) is never filled
with the frozen frame. ``--on-gap split`` (default) drops those ticks and splits the episode
around them; ``--on-gap skip`` drops every episode that has such a gap. The report gives the
stale span per topic in seconds (``stale_s``) and the gaps the recorder saw (``recorded_gaps``).

Resampling rule (see :mod:`action_diffusion_policy.data.resample`): the control clock ticks at
the embodiment's control frequency from the first instant every input has a sample to the last
instant every input still has one; at each tick each input (cameras, each arm's joint state, each
arm's command, episode status) takes its latest sample stamped at or before the tick, never a
later one; a tick where any input's sample is older than ``--max-staleness`` is dropped and
counted (per input) in the report; a run of dropped ticks splits the episode into segments.

Stamps: ``--time-source header`` (default) uses ``header.stamp`` for topics whose messages all
carry a non-zero one, and the bag's receive (log) time for the others (e.g.
``Float64MultiArray`` commands); ``--time-source log`` uses receive time everywhere.

State is the unified 128-slot state of the joint states (``unified_action_space``). Action is
``command`` (the commanded joint positions mapped into the unified slots, the default) or
``next_state`` (the state at the next tick, as RDT does; the last tick of each segment is then
dropped). ``env_state`` is ``/sim/episode_status.object_poses`` when every bag has it.

The dataset is written through :class:`~action_diffusion_policy.data.format.DatasetWriter`
(temporary directory, renamed into place at the end): a bag that breaks half-way leaves nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from action_diffusion_policy.data import embodiment_adapter as ea
from action_diffusion_policy.data import images as imgs
from action_diffusion_policy.data.bags import (
    BagError,
    check_topics,
    header_stamp_ns,
    iter_messages,
    open_bag,
    read_episode_metadata,
    read_episode_record,
    topic_types,
)
from action_diffusion_policy.data.format import DatasetMeta, DatasetWriter
from action_diffusion_policy.data.repair_bag import default_output, repair_bag
from action_diffusion_policy.data.resample import resample, sort_stamps
from unified_action_space.state_assembler import merge_joint_states

ACTION_SOURCES = ("command", "next_state")
TIME_SOURCES = ("header", "log")
ON_GAP = ("split", "skip")


@dataclass
class BuildConfig:
    """Options of one dataset build (validated, errors name the option)."""

    bags: list[Path]
    output: Path
    embodiment: str | None = None
    action_source: str = "command"
    image_size: tuple[int, int] = (120, 160)
    cameras: list[str] | None = None  # None: every camera of the embodiment found in the bags
    max_staleness: float = 0.1
    time_source: str = "header"
    frequency: float | None = None  # None: the embodiment's control frequency
    env_state: bool = True
    only_success: bool = False
    on_gap: str = "split"
    repair: bool = False
    force: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.on_gap not in ON_GAP:
            raise ValueError(f"--on-gap {self.on_gap!r}: use one of {ON_GAP}")
        if self.action_source not in ACTION_SOURCES:
            raise ValueError(f"--action-source {self.action_source!r}: use one of {ACTION_SOURCES}")
        if self.time_source not in TIME_SOURCES:
            raise ValueError(f"--time-source {self.time_source!r}: use one of {TIME_SOURCES}")
        if self.max_staleness <= 0:
            raise ValueError(f"--max-staleness {self.max_staleness}: must be > 0 seconds")
        if self.frequency is not None and self.frequency <= 0:
            raise ValueError(f"--frequency {self.frequency}: must be > 0 Hz")
        h, w = self.image_size
        if h < 8 or w < 8:
            raise ValueError(f"--image-size {h} {w}: both must be >= 8 pixels")
        if not self.bags:
            raise ValueError("no bags given")


@dataclass
class BagReport:
    bag: str
    ticks: int = 0
    kept: int = 0
    dropped: int = 0
    stale: dict = field(default_factory=dict)  # ticks dropped per input
    stale_s: dict = field(default_factory=dict)  # the same, in seconds of the control clock
    recorded_gaps: dict = field(default_factory=dict)  # episode.json: topic -> [[t0, t1], ...]
    segments: int = 0
    frames: int = 0
    skipped: str = ""


def _is_bag(p: Path) -> bool:
    return (p / "metadata.yaml").is_file()


def _is_unclosed(p: Path) -> bool:
    return p.is_dir() and not _is_bag(p) and any(p.glob("*.mcap"))


def _closed_version(p: Path, repair: bool, progress: bool) -> Path:
    """The bag to read for the unclosed recording ``p``: its repaired copy, made now with
    ``repair``; without, BagError naming the fix."""
    done = default_output(p)
    if _is_bag(done):
        return done
    if not repair:
        raise BagError(
            f"{p}: an unclosed recording (an .mcap, no metadata.yaml: the recorder was killed?). "
            f"Recover it with `python -m action_diffusion_policy.data.repair_bag {p}`, or pass "
            "--repair"
        )
    report = repair_bag(p, progress=progress)
    print(f"build_dataset: repaired {p} -> {report.output}: {sum(report.messages.values())} "
          f"messages over {report.span_s:.2f} s, {report.bytes_dropped} bytes dropped",
          file=sys.stderr)  # fmt: skip
    return Path(report.output)


def find_bags(paths: Sequence[str | Path], repair: bool = False,
              progress: bool = False) -> list[Path]:  # fmt: skip
    """Bags among ``paths``: a bag directory itself, or the bags one level inside a directory
    (hidden ones skipped: a repair in progress). Unclosed recordings: see the module doc."""
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise BagError(f"{p}: no such file or directory")
        if _is_bag(p) or p.is_file():
            out.append(p)
            continue
        if _is_unclosed(p):
            out.append(_closed_version(p, repair, progress))
            continue
        dirs = sorted(q for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
        inner = [q for q in dirs if _is_bag(q)]
        for q in filter(_is_unclosed, dirs):
            fixed = _closed_version(q, repair, progress)
            if fixed not in inner:
                inner.append(fixed)
        if not inner:
            raise BagError(f"{p}: neither a bag (no metadata.yaml) nor a directory of bags")
        out.extend(sorted(inner))
    return out


class _Stream:
    """Samples of one topic: both stamps, and the extracted payload."""

    def __init__(self):
        self.log: list[int] = []
        self.header: list[int | None] = []
        self.items: list = []

    def add(self, log_ns: int, header_ns: int | None, item) -> None:
        self.log.append(log_ns)
        self.header.append(header_ns)
        self.items.append(item)

    def stamps(self, time_source: str) -> np.ndarray:
        if time_source == "header" and self.header and all(h is not None for h in self.header):
            return np.asarray(self.header, dtype=np.int64)
        return np.asarray(self.log, dtype=np.int64)


class DatasetBuilder:
    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg
        self.bags = find_bags(cfg.bags, repair=cfg.repair, progress=cfg.progress)
        name = cfg.embodiment or read_episode_metadata(self.bags[0]).embodiment
        if not name:
            raise BagError(
                f"{self.bags[0]}: the bag does not name its embodiment; pass --embodiment"
            )
        self.mapper = ea.UnifiedMapper(ea.load(name))
        self.frequency = cfg.frequency or self.mapper.control_frequency
        self.reports: list[BagReport] = []

    # ----------------------------------------------------------------- topic plan
    def _camera_plan(self, have: dict[str, str]) -> dict[str, tuple[str, str]]:
        """camera name -> (topic, type) in this bag: the embodiment's camera topics (raw, else
        their /compressed variant), then any other image topic, named after its topic."""
        plan, wrong = {}, []
        image_types = (ea.IMAGE_TYPE, ea.COMPRESSED_TYPE)
        for name, topic in ea.camera_topics(self.mapper.embodiment).items():
            for candidate in (topic, f"{topic}/compressed"):
                if candidate not in have:
                    continue
                if have[candidate] in image_types:
                    plan[name] = (candidate, have[candidate])
                    break
                wrong.append(f"topic {candidate} has type {have[candidate]}, expected "
                             f"{' or '.join(image_types)}")
        if wrong and (self.cfg.cameras is None or
                      any(c not in plan for c in self.cfg.cameras)):
            raise BagError("; ".join(wrong))
        # Image topics the embodiment config does not list (another robot's cameras): named
        # after their topic, /a/cam_x/image_raw[/compressed] -> cam_x; raw preferred.
        for topic, msgtype in sorted(have.items(), key=lambda kv: kv[0].endswith("compressed")):
            name = ea.camera_name_from_topic(topic)
            if msgtype in image_types and name not in plan:
                plan[name] = (topic, msgtype)
        if self.cfg.cameras is not None:
            missing = [c for c in self.cfg.cameras if c not in plan]
            if missing:
                known = ea.camera_topics(self.mapper.embodiment)
                raise BagError(
                    "missing camera topics: "
                    + ", ".join(f"{c} ({known.get(c, '?')}[/compressed])" for c in missing)
                )
            plan = {c: plan[c] for c in self.cfg.cameras}
        return plan

    def plan(self) -> tuple[list[str], int]:
        """Cameras (from the first bag unless given) and env_state dim, checked on every bag."""
        with open_bag(self.bags[0]) as reader:
            have = topic_types(reader)
            try:
                cams = list(self._camera_plan(have))
            except BagError as exc:
                raise BagError(f"{self.bags[0]}: {exc}") from None
        if self.cfg.cameras is None:
            self.cfg.cameras = cams
        env_dim = 0
        if self.cfg.env_state:
            env_dim = self._env_state_dim()
        return self.cfg.cameras, env_dim

    def _env_state_dim(self) -> int:
        dims = set()
        for bag in self.bags:
            with open_bag(bag) as reader:
                if ea.EPISODE_STATUS_TOPIC not in topic_types(reader):
                    return 0
                for _, _, msg in iter_messages(bag, reader, [ea.EPISODE_STATUS_TOPIC]):
                    dims.add(len(msg.object_poses))
                    break
        if len(dims) > 1:
            raise BagError(f"object_poses sizes differ between bags: {sorted(dims)}")
        return dims.pop() if dims else 0

    # ----------------------------------------------------------------- one bag
    def read_bag(self, bag: Path, env_dim: int, bar) -> tuple[dict, BagReport]:
        cfg, mapper = self.cfg, self.mapper
        report = BagReport(str(bag))
        with open_bag(bag) as reader:
            have = topic_types(reader)
            wanted = {t: [ea.JOINT_STATE_TYPE] for arm in mapper.arms
                      for t in arm.joint_state_topics}  # fmt: skip
            if cfg.action_source == "command":
                several = [a.name for a in mapper.arms if len(a.command_outputs) > 1]
                if several:
                    raise BagError(
                        f"{bag}: action_source 'command' reads one command topic per arm; arm(s) "
                        f"{several} of {mapper.name} send commands on several outputs; use "
                        "--action-source state (the next measured state as the action)"
                    )
                wanted.update({arm.command_topic: [arm.command_type] for arm in mapper.arms})
            optional = []
            if env_dim:
                wanted[ea.EPISODE_STATUS_TOPIC] = [ea.EPISODE_STATUS_TYPE]
            try:
                cam_plan = self._camera_plan(have)
            except BagError as exc:
                missing_cams = str(exc)
            else:
                missing_cams = ""
            try:
                check_topics(bag, reader, wanted, optional)
            except BagError as exc:
                raise BagError(f"{exc}" + (f"; {missing_cams}" if missing_cams else "")) from None
            if missing_cams:
                raise BagError(f"{bag}: {missing_cams}")
            topic_kind = {}
            for arm in mapper.arms:
                for t in arm.joint_state_topics:
                    topic_kind[t] = ("state", arm)
                if cfg.action_source == "command":
                    topic_kind[arm.command_topic] = ("command", arm)
            for cam, (topic, _) in cam_plan.items():
                topic_kind[topic] = ("camera", cam)
            if env_dim:
                topic_kind[ea.EPISODE_STATUS_TOPIC] = ("env", None)
            streams = {t: _Stream() for t in topic_kind}
            decoders = {t: imgs.FrameDecoder(have[t], cfg.image_size)
                        for t, (kind, _) in topic_kind.items() if kind == "camera"}
            for topic, log_ns, msg in iter_messages(bag, reader, list(topic_kind)):
                kind, what = topic_kind[topic]
                try:
                    if kind == "camera":
                        item = decoders[topic](msg)
                    elif kind == "state":
                        item = ea.joint_state_arrays(msg)
                    elif kind == "command":
                        item = ea.command_positions(msg, have[topic], what.command_joint_names)
                    else:
                        item = np.asarray(msg.object_poses, dtype=np.float32)
                        if item.shape != (env_dim,):
                            raise ValueError(f"object_poses has {item.size} values, not {env_dim}")
                except ValueError as exc:
                    raise BagError(
                        f"{bag}: {topic} message at t={log_ns / 1e9:.6f} s: {exc}"
                    ) from exc
                streams[topic].add(log_ns, header_stamp_ns(msg), item)
                bar.update(1)
        return {t: (topic_kind[t], s) for t, s in streams.items()}, report

    def episode_arrays(self, bag: Path, env_dim: int, bar) -> tuple[list[dict], BagReport]:
        """The segments of one bag as arrays ready for ``DatasetWriter.add_episode``."""
        cfg, mapper = self.cfg, self.mapper
        streams, report = self.read_bag(bag, env_dim, bar)
        sorted_streams, items = {}, {}
        for topic, (_, s) in streams.items():
            stamps, order = sort_stamps(s.stamps(cfg.time_source))
            sorted_streams[topic] = stamps
            items[topic] = [s.items[i] for i in order]
        empty = [t for t, st in sorted_streams.items() if len(st) == 0]
        if empty:
            raise BagError(f"{bag}: topics without any message: {', '.join(empty)}")
        res = resample(sorted_streams, self.frequency, cfg.max_staleness)
        report.ticks, report.stale = res.total_ticks, res.stale
        report.stale_s = {t: round(n / self.frequency, 3) for t, n in res.stale.items() if n}
        report.recorded_gaps = read_episode_record(bag).get("gaps") or {}
        n = len(res.ticks)
        # State per kept tick (memoized on the joint-state indices: states repeat when the
        # joint-state rate is below the control rate).
        # An arm may merge several JointState topics (FR3: arm + gripper).
        state_topics = [(arm, t) for arm in mapper.arms for t in arm.joint_state_topics]
        state = np.zeros((n, 128), np.float32)
        cache: dict[tuple, np.ndarray] = {}
        for k in range(n):
            key = tuple(int(res.indices[t][k]) for _, t in state_topics)
            if key not in cache:
                parts: dict[str, list] = {}
                for (arm, t), i in zip(state_topics, key):
                    parts.setdefault(arm.name, []).append(items[t][i])
                js = {arm: merge_joint_states(p) for arm, p in parts.items()}
                try:
                    cache[key] = mapper.state(js)
                except Exception as exc:
                    raise BagError(f"{bag}: joint state at tick {k}: {exc}") from exc
            state[k] = cache[key]
        keep = np.ones(n, dtype=bool)
        action = np.zeros((n, 128), np.float32)
        slots = mapper.action_slots
        segments = res.segments()
        if cfg.action_source == "command":
            cmd_topics = [(arm, arm.command_topic) for arm in mapper.arms]
            cache = {}
            for k in range(n):
                key = tuple(int(res.indices[t][k]) for _, t in cmd_topics)
                if key not in cache:
                    cmds = {arm.name: items[t][i] for (arm, t), i in zip(cmd_topics, key)}
                    try:
                        cache[key] = mapper.action_from_commands(cmds)
                    except Exception as exc:
                        raise BagError(f"{bag}: command at tick {k}: {exc}") from exc
                action[k] = cache[key]
        else:
            for seg in segments:
                idx = np.arange(seg.start, seg.stop)
                action[idx[:-1][:, None], slots[None, :]] = state[idx[1:][:, None], slots[None, :]]
                keep[seg.stop - 1] = False
        env = None
        if env_dim:
            t = ea.EPISODE_STATUS_TOPIC
            env = np.stack([items[t][i] for i in res.indices[t]]) if n else np.zeros((0, env_dim))
        cams = {}
        for topic, ((kind, cam), _) in streams.items():
            if kind == "camera":
                cams[cam] = np.stack([items[topic][i] for i in res.indices[topic]]) if n else None
        episodes = []
        for seg in segments:
            idx = np.arange(seg.start, seg.stop)[keep[seg.start : seg.stop]]
            if len(idx) == 0:
                continue
            episodes.append(
                {
                    "state": state[idx],
                    "action": action[idx],
                    "images": {c: v[idx] for c, v in cams.items()},
                    "env_state": None if env is None else env[idx],
                }
            )
        report.kept = int(keep.sum())
        report.dropped = report.ticks - report.kept
        report.segments = len(episodes)
        report.frames = sum(len(e["state"]) for e in episodes)
        return episodes, report

    # ----------------------------------------------------------------- all bags
    def build(self) -> dict:
        cfg = self.cfg
        if cfg.output.exists() and not cfg.force:
            raise FileExistsError(f"{cfg.output} already exists; pass --force to overwrite it")
        t0 = time.perf_counter()
        cameras, env_dim = self.plan()
        metas = [read_episode_metadata(b) for b in self.bags]
        total = 0  # messages the progress bar will count: the topics read, not the whole bag
        read = {t for arm in self.mapper.arms for t in (*arm.joint_state_topics, arm.command_topic)}
        read |= {ea.EPISODE_STATUS_TOPIC} if env_dim else set()
        for topic in ea.camera_topics(self.mapper.embodiment).values():
            read |= {topic, f"{topic}/compressed"}
        for bag in self.bags:
            with open_bag(bag) as reader:
                total += sum(c.msgcount for c in reader.connections if c.topic in read
                             or c.msgtype in (ea.IMAGE_TYPE, ea.COMPRESSED_TYPE))
        meta = DatasetMeta(
            embodiment=self.mapper.name,
            control_frequency=float(self.frequency),
            camera_names=list(cameras),
            image_size=tuple(cfg.image_size) if cameras else None,
            state_mask=self.mapper.state_mask.tolist(),
            action_slots=self.mapper.action_slots.tolist(),
            env_state_dim=env_dim,
            action_source=cfg.action_source,
        )
        frames = 0
        with DatasetWriter(cfg.output, meta, force=cfg.force) as writer, tqdm(
            total=total, unit="msg", desc="build_dataset", disable=not cfg.progress
        ) as bar:
            for bag, bmeta in zip(self.bags, metas):
                if cfg.only_success and not bmeta.success:
                    self.reports.append(BagReport(str(bag), skipped="not successful"))
                    continue
                episodes, report = self.episode_arrays(bag, env_dim, bar)
                if cfg.on_gap == "skip" and report.stale_s:
                    report.skipped = "gap: " + ", ".join(
                        f"{t} stale for {v:.2f} s" for t, v in report.stale_s.items())
                    report.frames = report.kept = report.segments = 0
                    self.reports.append(report)
                    continue
                for i, ep in enumerate(episodes):
                    writer.add_episode(
                        ep["state"],
                        ep["action"],
                        ep["images"],
                        ep["env_state"],
                        task=bmeta.task,
                        instruction=bmeta.instruction,
                        success=bmeta.success,
                        source=f"{bag.name}" + (f"#{i}" if len(episodes) > 1 else ""),
                    )
                if not episodes:
                    report.skipped = "no tick kept"
                frames += report.frames
                self.reports.append(report)
            if frames == 0:
                raise BagError(
                    "no frame survived resampling in any bag: " + json.dumps(
                        [r.__dict__ for r in self.reports]
                    )
                )
            writer.meta.extra = {"build": self._summary(time.perf_counter() - t0, frames)}
        return self._summary(time.perf_counter() - t0, frames)

    def _summary(self, seconds: float, frames: int) -> dict:
        return {
            "output": str(self.cfg.output),
            "bags": len(self.bags),
            "frames": frames,
            "dropped_ticks": sum(r.dropped for r in self.reports),
            "stale_s": _sum_dicts(r.stale_s for r in self.reports),
            "control_frequency": self.frequency,
            "max_staleness_s": self.cfg.max_staleness,
            "time_source": self.cfg.time_source,
            "action_source": self.cfg.action_source,
            "seconds": round(seconds, 3),
            "frames_per_s": round(frames / max(seconds, 1e-9), 1),
            "per_bag": [r.__dict__ for r in self.reports],
        }


def _sum_dicts(dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = round(out.get(k, 0) + v, 3)
    return out


def build_dataset(**kwargs) -> dict:
    """Python entry point: ``build_dataset(bags=[...], output=..., ...)`` -> report dict."""
    kwargs["bags"] = [Path(b) for b in kwargs["bags"]]
    kwargs["output"] = Path(kwargs["output"])
    return DatasetBuilder(BuildConfig(**kwargs)).build()


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="build_dataset",
        description="Resample rosbag2 demonstrations onto the control clock and write a dataset.",
    )
    ap.add_argument("bags", nargs="+", help="bag directories, or directories holding bags")
    ap.add_argument("-o", "--output", required=True, help="dataset directory to create")
    ap.add_argument("--embodiment", help="embodiment name or YAML path (default: from the bag)")
    ap.add_argument("--action-source", choices=ACTION_SOURCES, default="command",
                    help="commanded joint positions, or the next observed state (RDT)")
    ap.add_argument("--image-size", nargs=2, type=int, default=(120, 160), metavar=("H", "W"))
    ap.add_argument("--cameras", nargs="+", help="camera names (default: all found)")
    ap.add_argument("--max-staleness", type=float, default=0.1,
                    help="drop ticks whose inputs are older than this many seconds")
    ap.add_argument("--time-source", choices=TIME_SOURCES, default="header")
    ap.add_argument("--frequency", type=float, help="control clock in Hz (default: embodiment)")
    ap.add_argument("--no-env-state", action="store_true",
                    help="do not store /sim/episode_status object poses")
    ap.add_argument("--only-success", action="store_true", help="skip unsuccessful episodes")
    ap.add_argument("--on-gap", choices=ON_GAP, default="split",
                    help="ticks with a stale input: drop them and split the episode, or skip "
                         "the whole episode")
    ap.add_argument("--repair", action="store_true",
                    help="recover unclosed recordings (killed recorder) first, beside them")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        report = build_dataset(
            bags=a.bags,
            output=a.output,
            embodiment=a.embodiment,
            action_source=a.action_source,
            image_size=tuple(a.image_size),
            cameras=a.cameras,
            max_staleness=a.max_staleness,
            time_source=a.time_source,
            frequency=a.frequency,
            env_state=not a.no_env_state,
            only_success=a.only_success,
            on_gap=a.on_gap,
            repair=a.repair,
            force=a.force,
            progress=not a.no_progress,
        )
    except (BagError, FileExistsError, ValueError) as exc:
        print(f"build_dataset: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
