"""rosbag2 files through the ``rosbags`` library: episode metadata, a threaded writer, a reader.

No rclpy here: the recorder node hands this module serialized CDR bytes, and the dataset builder,
the bag player and the offline evaluator read bags through :func:`open_bag`.

Episode metadata lives in two places of a bag directory, so that both ``ros2 bag info`` and our
tools see it:

* ``metadata.yaml`` -> ``rosbag2_bagfile_information.custom_data`` (string -> string):
  ``embodiment``, ``task``, ``instruction``, ``success`` (``"true"``/``"false"``), ``notes``,
  ``recorder`` and ``episode_json`` (the whole record below as JSON);
* ``episode.json`` beside it: the same record plus the recorder's per-topic message counts.

A bag recorded by plain ``ros2 bag record`` has neither; it reads as empty metadata.

Integrity: rosbags writes MCAP chunks without CRCs, so flipped bytes on disk would go unnoticed.
:class:`BagRecorder` fills in the CRCs the MCAP format defines (each chunk's, the data section's
and the summary's) when it closes a bag (:func:`write_mcap_crcs`), and :func:`open_bag` checks
every CRC a file carries before reading it (:func:`verify_mcap_crcs`), raising
:class:`BagIntegrityError` naming the bag, the chunk and its byte offset. A CRC of zero means
"not computed" in MCAP, so bags from other writers still read as before.

Crash safety: :class:`BagRecorder` closes the pending MCAP chunk and flushes it to the OS (and
to disk, ``fsync``) every ``flush_interval_s`` seconds, and writes ``episode.json`` with the
topics and types as soon as the bag opens. A recorder killed mid-episode therefore loses at most
the last ``flush_interval_s`` seconds plus its writer backlog; :mod:`.repair_bag` rebuilds a
readable bag from the complete chunks. A free-space guard (``min_free_bytes``) ends an episode
cleanly before the disk fills, and per-topic gaps (a camera that stops) are kept in
``episode.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

CUSTOM_MSG_PACKAGE = "action_diffusion_msgs"
EPISODE_FILE = "episode.json"
RECORDER_NAME = "action_diffusion_policy.recorder/1"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag is missing, unreadable, truncated or lacks what was asked of it."""


class BagIntegrityError(BagError):
    """A storage file's bytes do not match a CRC written with them: the bag is corrupt."""


class DiskFullError(BagError):
    """The bag's filesystem has (or had) less free space than the recorder needs."""


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (or its
    nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


def disk_full_text(path: str | os.PathLike, free: int, needed: int) -> str:
    return (
        f"disk full: {path} has {free / 2**20:.1f} MiB free, the recorder keeps "
        f"{needed / 2**20:.1f} MiB in reserve (parameter min_free_mb); free some space"
    )


# --------------------------------------------------------------------------------------------
# Message types


def _find_msg_dir() -> Path:
    """Directory with action_diffusion_msgs' ``.msg`` files (installed share, else source tree)."""
    with contextlib.suppress(Exception):
        from ament_index_python.packages import get_package_share_directory

        d = Path(get_package_share_directory(CUSTOM_MSG_PACKAGE)) / "msg"
        if d.is_dir():
            return d
    for parent in Path(__file__).resolve().parents:
        d = parent / CUSTOM_MSG_PACKAGE / "msg"
        if d.is_dir():
            return d
        d = parent / "src" / CUSTOM_MSG_PACKAGE / "msg"
        if d.is_dir():
            return d
    raise BagError(
        f"cannot find the .msg files of {CUSTOM_MSG_PACKAGE}; build the workspace "
        "(bash scripts/setup.sh) and source scripts/env.sh"
    )


@lru_cache(maxsize=1)
def typestore():
    """Jazzy's standard types plus ours, registered from the same ``.msg`` files ROS builds."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for f in sorted(_find_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"{CUSTOM_MSG_PACKAGE}/msg/{f.stem}"))
    store.register(types)
    return store


def normalize_type_name(msgtype: str) -> str:
    """``sensor_msgs/Image`` -> ``sensor_msgs/msg/Image`` (the form bags store)."""
    parts = msgtype.strip().split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and all(parts):
        return msgtype.strip()
    raise BagError(f"message type {msgtype!r} is not of the form pkg/msg/Name")


# --------------------------------------------------------------------------------------------
# Episode metadata


@dataclass
class EpisodeMetadata:
    """What a bag records about its episode, besides the messages."""

    embodiment: str = ""
    task: str = ""
    instruction: str = ""
    success: bool = False
    notes: str = ""
    started_at: str = ""  # ISO 8601 wall-clock time the recording started
    recorder: str = RECORDER_NAME
    extra: dict = field(default_factory=dict)

    def to_custom_data(self) -> dict[str, str]:
        return {
            "embodiment": self.embodiment,
            "task": self.task,
            "instruction": self.instruction,
            "success": "true" if self.success else "false",
            "notes": self.notes,
            "recorder": self.recorder,
            "episode_json": json.dumps(asdict(self), sort_keys=True),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> EpisodeMetadata:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if isinstance(known.get("success"), str):
            known["success"] = known["success"].strip().lower() == "true"
        return cls(**known)


def read_episode_metadata(bag: str | os.PathLike) -> EpisodeMetadata:
    """Metadata of a bag: ``episode.json``, else ``metadata.yaml`` custom_data, else empty."""
    bag = Path(bag)
    side = bag / EPISODE_FILE
    if side.is_file():
        try:
            return EpisodeMetadata.from_dict(json.loads(side.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise BagError(f"{side}: not a valid episode record ({exc})") from exc
    meta = bag / "metadata.yaml"
    if meta.is_file():
        from ruamel.yaml import YAML

        info = (YAML(typ="safe").load(meta.read_text()) or {}).get(
            "rosbag2_bagfile_information", {}
        )
        custom = info.get("custom_data") or {}
        if "episode_json" in custom:
            with contextlib.suppress(json.JSONDecodeError, TypeError):
                return EpisodeMetadata.from_dict(json.loads(custom["episode_json"]))
        return EpisodeMetadata.from_dict(custom)
    return EpisodeMetadata(recorder="")


def update_episode_success(bag: str | os.PathLike, success: bool) -> None:
    """Change the success flag of a finished bag (both places), e.g. after review."""
    bag = Path(bag)
    meta = read_episode_metadata(bag)
    meta.success = bool(success)
    _write_sidecar(bag, meta, None)
    yaml_path = bag / "metadata.yaml"
    if yaml_path.is_file():
        from ruamel.yaml import YAML

        yaml = YAML(typ="safe")
        doc = yaml.load(yaml_path.read_text())
        doc["rosbag2_bagfile_information"]["custom_data"] = meta.to_custom_data()
        tmp = yaml_path.with_suffix(".yaml.tmp")
        with open(tmp, "w") as f:
            yaml.dump(doc, f)
        os.replace(tmp, yaml_path)


def read_episode_record(bag: str | os.PathLike) -> dict:
    """The raw ``episode.json`` of a bag (metadata plus the recorder's keys: ``topics``,
    ``closed``, ``message_counts``, ``gaps``, ``stopped_by``); {} when there is none."""
    side = Path(bag) / EPISODE_FILE
    if not side.is_file():
        return {}
    try:
        record = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise BagError(f"{side}: not a valid episode record ({exc})") from exc
    return record if isinstance(record, dict) else {}


def _write_sidecar(
    bag: Path, meta: EpisodeMetadata, counts: Mapping[str, int] | None, **recorder_keys
) -> None:
    """Write ``episode.json`` atomically: ``meta``, the counts, and recorder keys (``topics``,
    ``closed``, ``gaps``, ...); keys not given keep their previous value."""
    previous = {}
    with contextlib.suppress(BagError):  # a damaged old record is replaced, not kept
        previous = read_episode_record(bag)
    record = {k: v for k, v in previous.items() if k not in EpisodeMetadata.__dataclass_fields__}
    record.update(asdict(meta))
    if counts is not None:
        record["message_counts"] = dict(counts)
    record.update(recorder_keys)
    tmp = bag / f"{EPISODE_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, bag / EPISODE_FILE)


# --------------------------------------------------------------------------------------------
# Writing


class ReceiveTimeMapper:
    """Maps a DDS receive time (system clock, ns) onto simulated time.

    The recorder stamps each message with the time it *arrived*, not the time its callback ran:
    under CPU load the executor may run callbacks hundreds of ms late, and stamping then would
    shift topics without a header (commands) against stamped ones. On sim time the mapping uses
    the receive times of ``/clock`` messages: a message received at wall time ``w`` gets the
    latest clock value received at or before ``w`` (sim time is piecewise constant anyway).
    """

    def __init__(self, history: int = 4096):
        self._wall: list[int] = []
        self._sim: list[int] = []
        self._history = history

    def add_clock(self, received_wall_ns: int, sim_ns: int) -> None:
        if self._wall and received_wall_ns < self._wall[-1]:
            return  # out of order: keep the mapping monotonic
        self._wall.append(int(received_wall_ns))
        self._sim.append(int(sim_ns))
        if len(self._wall) > 2 * self._history:
            del self._wall[: self._history], self._sim[: self._history]

    def to_sim(self, received_wall_ns: int) -> int | None:
        """Sim time at ``received_wall_ns``; None before the first /clock message."""
        import bisect

        i = bisect.bisect_right(self._wall, int(received_wall_ns)) - 1
        return self._sim[i] if i >= 0 else None


@dataclass
class RecordingStats:
    """Per-topic counts of one recording: what arrived and what reached the bag."""

    bag_path: str
    received: dict[str, int]
    written: dict[str, int]
    max_queue: int
    bytes_written: int
    duration_s: float
    gaps: dict[str, list[list[float]]] = field(default_factory=dict)
    stopped_by: str = ""  # "" (stop()), or "disk_full"

    @property
    def lost(self) -> int:
        return sum(self.received.values()) - sum(self.written.values())


class _GapTracker:
    """Per-topic spans (bag time, s) longer than ``gap_s`` without a message: a camera or a
    driver that stopped mid-episode. Cheap enough for ``put()``: one dict lookup per message."""

    def __init__(self, topics, gap_s: float):
        self.gap_ns = int(gap_s * 1e9)
        self.last: dict[str, int] = {}
        self.gaps: dict[str, list[list[float]]] = {t: [] for t in topics}

    def add(self, topic: str, stamp_ns: int) -> None:
        last = self.last.get(topic)
        if last is not None and stamp_ns - last > self.gap_ns:
            self.gaps[topic].append([last / 1e9, stamp_ns / 1e9])
        if last is None or stamp_ns > last:
            self.last[topic] = stamp_ns

    def result(self) -> dict[str, list[list[float]]]:
        """Gaps per topic, including one still open at the end (a topic that never came back;
        the end is the newest stamp of any topic)."""
        out = {t: list(g) for t, g in self.gaps.items() if g}
        if self.last:
            end = max(self.last.values())
            for topic, last in self.last.items():
                if end - last > self.gap_ns:
                    out.setdefault(topic, []).append([last / 1e9, end / 1e9])
        return out


class BagRecorder:
    """Write serialized messages into one rosbag2 bag from a background thread.

    ``put()`` only appends to an unbounded queue, so a subscription callback never waits on
    disk; the writer thread drains it. The bag is opened, written and closed by that one thread
    (sqlite3 connections must stay in the thread that made them). ``stop()`` drains everything,
    writes metadata and returns counts, so "nothing lost" is checkable: ``stats.lost == 0``.

    What a crash can lose (MCAP): every ``flush_interval_s`` the writer closes the pending chunk
    and flushes it (``fsync``: to the disk, so a power cut is covered too). A SIGKILL then loses
    at most the messages of the last ``flush_interval_s`` seconds plus those still queued.
    ``episode.json`` (``closed: false``, the topics and their types) is written when the bag
    opens. Before each flush the writer checks the free space: below ``min_free_bytes`` it stops
    writing, closes the bag cleanly (what it wrote is kept) and sets :attr:`disk_full`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        topics: Mapping[str, str],
        storage: str = "mcap",
        metadata: EpisodeMetadata | None = None,
        flush_interval_s: float = 1.0,
        fsync: bool = True,
        min_free_bytes: int = 0,
        gap_s: float = 0.5,
    ):
        if storage not in STORAGES:
            raise BagError(f"storage {storage!r} is not one of {sorted(STORAGES)}")
        if not topics:
            raise BagError("no topics to record")
        if not flush_interval_s > 0:
            raise BagError(f"flush_interval_s={flush_interval_s!r}: must be > 0 s")
        if not gap_s > 0:
            raise BagError(f"gap_s={gap_s!r}: must be > 0 s")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} already exists; pick another bag name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.min_free_bytes = int(min_free_bytes)
        free = free_bytes(self.path.parent)
        if free < self.min_free_bytes:
            raise DiskFullError(disk_full_text(self.path.parent, free, self.min_free_bytes))
        store = typestore()
        self._types = {}
        for topic, msgtype in topics.items():
            msgtype = normalize_type_name(msgtype)
            if msgtype not in store.fielddefs:
                raise BagError(
                    f"topic {topic}: message type {msgtype} is unknown to the bag typestore"
                )
            self._types[topic] = msgtype
        self._storage = STORAGES[storage]
        self.flush_interval_s = float(flush_interval_s)
        self.fsync = bool(fsync)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.received = dict.fromkeys(self._types, 0)
        self.written = dict.fromkeys(self._types, 0)
        self._gaps = _GapTracker(self._types, gap_s)
        self._bytes = 0
        self._max_queue = 0
        self._error: BaseException | None = None
        self.disk_full: str = ""  # the log line, once the free-space guard stopped the bag
        self._metadata: EpisodeMetadata | None = None
        self._early_metadata = metadata or EpisodeMetadata()
        self._ready = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"bag-writer:{self.path.name}")
        self._thread.daemon = True
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise BagError(f"{self.path}: cannot create bag: {self._error}") from self._error

    @property
    def topics(self) -> list[str]:
        return list(self._types)

    def put(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        """Queue one serialized (CDR) message; returns at once."""
        if topic not in self._types:
            raise BagError(f"topic {topic} is not recorded in {self.path}")
        self.received[topic] += 1
        self._gaps.add(topic, int(timestamp_ns))
        self._queue.put((topic, int(timestamp_ns), data))

    def backlog(self) -> int:
        return self._queue.qsize()

    def _flush(self, writer: Writer) -> None:
        """Close the pending MCAP chunk and push it to the OS (and the disk): from here on a
        crash cannot lose it. sqlite3 commits on its own."""
        storage = writer.storage
        chunk = getattr(storage, "chunk", None)
        if chunk is None or not chunk.msgs:
            return
        storage.close_chunk()
        storage.bio.flush()
        if self.fsync:
            os.fsync(storage.bio.fileno())

    def _run(self) -> None:
        try:
            writer = Writer(self.path, version=9, storage_plugin=self._storage)
            writer.open()
            store = typestore()
            conns = {t: writer.add_connection(t, ty, typestore=store)
                     for t, ty in self._types.items()}
            _write_sidecar(self.path, self._early_metadata, None, topics=dict(self._types),
                           closed=False)  # fmt: skip
        except BaseException as exc:
            self._error = exc
            with contextlib.suppress(Exception):
                writer.abort()
            self._ready.set()
            return
        self._ready.set()
        next_flush = time.monotonic() + self.flush_interval_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                item = ()
            if item is None:
                break
            if time.monotonic() >= next_flush and self._error is None and not self.disk_full:
                next_flush = time.monotonic() + self.flush_interval_s
                try:
                    self._flush(writer)
                    free = free_bytes(self.path)
                    if free < self.min_free_bytes:
                        self.disk_full = disk_full_text(self.path, free, self.min_free_bytes)
                except BaseException as exc:  # disk full, ...: surfaced by stop()
                    self._error = exc
            if not item:
                continue
            qsize = self._queue.qsize()
            if qsize > self._max_queue:
                self._max_queue = qsize
            if self._error is not None or self.disk_full:
                continue  # keep draining so stop() returns; counted as lost
            topic, stamp, data = item
            try:
                writer.write(conns[topic], stamp, data)
            except BaseException as exc:  # disk full, ...: surfaced by stop()
                self._error = exc
                continue
            self.written[topic] += 1
            self._bytes += len(data)
        try:
            if self._error is not None:
                writer.abort()  # the complete chunks stay readable: see repair_bag
                return
            for key, value in self._metadata.to_custom_data().items():
                writer.set_custom_data(key, value)
            writer.close()
            write_bag_crcs(self.path)
        except BaseException as exc:
            self._error = exc

    def stop(self, metadata: EpisodeMetadata) -> RecordingStats:
        """Drain the queue, close the bag with ``metadata`` and return the counts.

        After the free-space guard tripped the bag is still closed and kept (``stopped_by:
        disk_full`` in the stats and in episode.json). A write error (e.g. ENOSPC outside the
        guard) raises BagError, naming the bag, the free space, and how to recover the rest.
        """
        self._metadata = metadata
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            free = free_bytes(self.path.parent)
            raise BagError(
                f"{self.path}: writing failed: {self._error} ({free / 2**20:.1f} MiB free); the "
                "chunks written so far can be recovered with "
                f"`python -m action_diffusion_policy.data.repair_bag {self.path}`"
            ) from self._error
        gaps = self._gaps.result()
        stopped_by = "disk_full" if self.disk_full else ""
        _write_sidecar(self.path, metadata, self.written, topics=dict(self._types), closed=True,
                       gaps=gaps, stopped_by=stopped_by)  # fmt: skip
        return RecordingStats(
            str(self.path),
            dict(self.received),
            dict(self.written),
            self._max_queue,
            self._bytes,
            time.monotonic() - self._t0,
            gaps,
            stopped_by,
        )


# --------------------------------------------------------------------------------------------
# Reading


@contextlib.contextmanager
def open_bag(path: str | os.PathLike) -> Iterator[AnyReader]:
    """Open a rosbag2 directory (sqlite3 or MCAP) with our message types as fallback.

    MCAP files are checked against their CRCs first (:class:`BagIntegrityError` on a mismatch).
    Errors name the bag; use :func:`iter_messages` to also learn where a damaged bag broke.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(
            f"{path}: no metadata.yaml; the recording was not closed (crashed recorder?). "
            "Recover its complete chunks with "
            f"`python -m action_diffusion_policy.data.repair_bag {path}` (or build_dataset "
            "--repair)"
        )
    verify_bag_crcs(path)
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as exc:
        detail = "".join(f"; {d}" for d in map(diagnose_storage_file, _storage_files(path)) if d)
        raise BagError(f"{path}: cannot open bag: {exc}{detail}") from exc
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def _storage_files(bag: Path) -> list[Path]:
    if bag.is_file():
        return [bag]
    return sorted(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_MESSAGE, _MCAP_CHUNK = 0x05, 0x06


def diagnose_storage_file(path: Path) -> str:
    """Where a storage file breaks: for MCAP, the byte offset of the first incomplete record."""
    if path.suffix != ".mcap":
        return ""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(8) != MCAP_MAGIC:
            return f"{path.name}: not an MCAP file (bad magic at byte 0)"
        offset, chunks, messages = 8, 0, 0
        while offset < size:
            head = f.read(9)
            if len(head) < 9:
                break
            opcode, length = head[0], int.from_bytes(head[1:], "little")
            if offset + 9 + length > size:
                return (
                    f"{path.name}: truncated at byte {size} of a record that should end at byte "
                    f"{offset + 9 + length} (record starts at byte {offset}; "
                    f"{chunks} complete chunks and {messages} loose messages before it)"
                )
            if opcode == 0x00 or opcode > 0x0F:
                return f"{path.name}: corrupt record (opcode {opcode:#x}) at byte {offset}"
            chunks += opcode == _MCAP_CHUNK
            messages += opcode == _MCAP_MESSAGE
            f.seek(length, 1)
            offset += 9 + length
            if opcode == 0x02:  # footer
                return ""
        return f"{path.name}: ends at byte {offset} without an MCAP footer (truncated)"


# --------------------------------------------------------------------------------------------
# MCAP CRCs (https://mcap.dev/spec: a CRC of zero means "not computed")

_MCAP_FOOTER, _MCAP_DATA_END = 0x02, 0x0F
_CHUNK_CRC_AT = 24  # in a chunk's content: start time, end time, uncompressed size, then the CRC
_FOOTER_SIZE = 9 + 20  # opcode, length, summary_start, summary_offset_start, summary_crc


@dataclass
class _McapLayout:
    """Where the CRCs of one MCAP file are: chunk records, DataEnd, footer."""

    chunks: list[tuple[int, int]]  # (record offset, stored CRC) in file order
    chunk_crcs: list[int]  # computed over each chunk's uncompressed records
    data_end: int  # offset of the DataEnd record
    data_crc_stored: int
    data_crc: int  # computed over bytes [0, data_end)
    summary_start: int
    summary_crc_stored: int
    summary_crc: int  # computed over [summary_start, footer + 25); 0 without a summary
    footer: int


def chunk_fields(body: bytes, strict: bool = False) -> tuple[int, int, str, bytes]:
    """A Chunk record's ``(stored CRC, uncompressed size, compression, records)``; raises
    struct.error or UnicodeDecodeError on a malformed one. ``records`` may come out shorter
    than the record says when the body is cut short; ``strict`` raises struct.error then."""
    stored = struct.unpack_from("<I", body, _CHUNK_CRC_AT)[0]
    usize = struct.unpack_from("<Q", body, 16)[0]
    n = struct.unpack_from("<I", body, 28)[0]
    compression = body[32 : 32 + n].decode()
    csize = struct.unpack_from("<Q", body, 32 + n)[0]
    records = body[40 + n : 40 + n + csize]
    if strict and len(records) != csize:
        raise struct.error("chunk records run past the record")
    return stored, usize, compression, records


def _decompress_chunk(compression: str, data: bytes, size: int) -> bytes | None:
    if compression == "":
        return data
    try:
        if compression == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        if compression == "lz4":
            import lz4.frame

            return lz4.frame.decompress(data)
    except ImportError:
        return None
    return None  # unknown compression: the reader reports it


def _mcap_layout(f, size: int, filled: bool = False) -> _McapLayout | None:
    """Walk the records of an open MCAP file; None when it is not a complete MCAP file (the
    reader and :func:`diagnose_storage_file` then say where it breaks).

    ``filled``: compute the data section CRC as it will be once the zero chunk CRCs are filled
    in with the computed ones (for :func:`write_mcap_crcs`); else over the bytes as they are.
    """
    if size < 8 + _FOOTER_SIZE + 8 or f.read(8) != MCAP_MAGIC:
        return None
    chunks, chunk_crcs = [], []
    data_crc = zlib.crc32(MCAP_MAGIC)
    offset = 8
    while True:
        head = f.read(9)
        if len(head) < 9:
            return None
        opcode, length = head[0], int.from_bytes(head[1:], "little")
        if offset + 9 + length > size:
            return None
        if opcode == _MCAP_DATA_END:
            if length < 4:
                return None
            data_end, data_crc_stored = offset, struct.unpack("<I", f.read(4))[0]
            f.seek(length - 4, 1)
            break
        if opcode == _MCAP_FOOTER:
            return None  # no DataEnd record: not from an MCAP writer we know
        body = f.read(length)
        data_crc = zlib.crc32(head, data_crc)
        if opcode != _MCAP_CHUNK:
            data_crc = zlib.crc32(body, data_crc)
        else:
            try:
                stored, usize, compression, records = chunk_fields(body)
            except (struct.error, UnicodeDecodeError):
                return None
            raw = _decompress_chunk(compression, records, usize)
            crc = zlib.crc32(raw) if raw is not None else stored
            chunks.append((offset, stored))
            chunk_crcs.append(crc)
            at = _CHUNK_CRC_AT
            field = struct.pack("<I", crc) if filled and stored == 0 else body[at : at + 4]
            data_crc = zlib.crc32(field, zlib.crc32(body[:at], data_crc))
            data_crc = zlib.crc32(body[at + 4 :], data_crc)
        offset += 9 + length
    footer = size - 8 - _FOOTER_SIZE
    f.seek(footer)
    tail = f.read(_FOOTER_SIZE + 8)
    if tail[0] != _MCAP_FOOTER or tail[-8:] != MCAP_MAGIC:
        return None
    summary_start, _, summary_crc_stored = struct.unpack_from("<QQI", tail, 9)
    summary_crc = 0
    if summary_start:
        if not data_end < summary_start <= footer:
            return None
        f.seek(summary_start)
        summary_crc = zlib.crc32(f.read(footer + 25 - summary_start))
    return _McapLayout(chunks, chunk_crcs, data_end, data_crc_stored, data_crc, summary_start,
                       summary_crc_stored, summary_crc, footer)  # fmt: skip


def write_mcap_crcs(path: str | os.PathLike) -> int:
    """Fill in the CRCs an MCAP file leaves at zero (chunks, data section, summary), in place.

    The file keeps its size and every other byte, so ``metadata.yaml`` stays valid and any MCAP
    reader (``ros2 bag``, Foxglove, the ``mcap`` package) reads it as before, now able to check
    it. Returns the number of chunks; raises BagError when the file is not a complete MCAP file.
    """
    path = Path(path)
    with open(path, "r+b") as f:
        layout = _mcap_layout(f, path.stat().st_size, filled=True)
        if layout is None:
            raise BagError(f"{path}: not a complete MCAP file; cannot add CRCs")
        for (offset, stored), crc in zip(layout.chunks, layout.chunk_crcs, strict=True):
            if stored == 0:
                f.seek(offset + 9 + _CHUNK_CRC_AT)
                f.write(struct.pack("<I", crc))
        if layout.data_crc_stored == 0:  # computed with the chunk CRCs just written
            f.seek(layout.data_end + 9)
            f.write(struct.pack("<I", layout.data_crc))
        if layout.summary_start and layout.summary_crc_stored == 0:
            f.seek(layout.footer + 25)
            f.write(struct.pack("<I", layout.summary_crc))
    return len(layout.chunks)


def verify_mcap_crcs(path: str | os.PathLike, bag: str | os.PathLike | None = None) -> None:
    """Check every non-zero CRC of an MCAP file; BagIntegrityError names the bag, the chunk
    and its byte offset (or the section). A file that is not complete MCAP is left to the
    reader, whose error says where it breaks."""
    path = Path(path)
    where = f"{bag if bag is not None else path}: {path.name}"
    with open(path, "rb") as f:
        layout = _mcap_layout(f, path.stat().st_size)
    if layout is None:
        return
    n = len(layout.chunks)
    for i, ((offset, stored), crc) in enumerate(zip(layout.chunks, layout.chunk_crcs, strict=True)):
        if stored and stored != crc:
            raise BagIntegrityError(
                f"{where}: chunk {i + 1} of {n} (record at byte {offset}) fails its CRC check "
                f"(stored {stored:#010x}, computed {crc:#010x}): the bag is corrupt"
            )
    if layout.data_crc_stored and layout.data_crc_stored != layout.data_crc:
        raise BagIntegrityError(
            f"{where}: the data section (bytes 0 to {layout.data_end}) fails its CRC check "
            f"(stored {layout.data_crc_stored:#010x}, computed {layout.data_crc:#010x}), outside"
            " any chunk's records: the bag is corrupt"
        )
    if layout.summary_crc_stored and layout.summary_crc_stored != layout.summary_crc:
        raise BagIntegrityError(
            f"{where}: the summary section (bytes {layout.summary_start} to {layout.footer + 25})"
            f" fails its CRC check (stored {layout.summary_crc_stored:#010x}, computed "
            f"{layout.summary_crc:#010x}): the bag is corrupt"
        )


def write_bag_crcs(bag: str | os.PathLike) -> None:
    """:func:`write_mcap_crcs` on every MCAP file of a closed bag (sqlite3 bags: nothing)."""
    for file in _storage_files(Path(bag)):
        if file.suffix == ".mcap":
            write_mcap_crcs(file)


_verified: dict[tuple[str, int, int], None] = {}  # (file, size, mtime) checked already
_verified_lock = threading.Lock()


def verify_bag_crcs(bag: str | os.PathLike) -> None:
    """:func:`verify_mcap_crcs` on every MCAP file of a bag, once per file version."""
    for file in _storage_files(Path(bag)):
        if file.suffix != ".mcap":
            continue
        st = file.stat()
        key = (str(file.resolve()), st.st_size, st.st_mtime_ns)
        with _verified_lock:
            if key in _verified:
                continue
        verify_mcap_crcs(file, bag)
        with _verified_lock:
            _verified[key] = None


def topic_types(reader: AnyReader) -> dict[str, str]:
    """topic -> message type of every connection in the bag."""
    return {c.topic: c.msgtype for c in reader.connections}


def check_topics(
    bag: str | os.PathLike,
    reader: AnyReader,
    wanted: Mapping[str, Sequence[str]],
    optional: Sequence[str] = (),
) -> list[str]:
    """Raise naming every missing topic and every type mismatch; return the optional ones found.

    ``wanted`` maps topic -> accepted message types.
    """
    have = topic_types(reader)
    missing = [t for t in wanted if t not in have and t not in optional]
    problems = []
    if missing:
        problems.append(
            "missing topics: " + ", ".join(missing) + f" (the bag has: {', '.join(sorted(have))})"
        )
    for topic, types in wanted.items():
        if topic in have and have[topic] not in [normalize_type_name(t) for t in types]:
            problems.append(
                f"topic {topic} has type {have[topic]}, expected " + " or ".join(types)
            )
    if problems:
        raise BagError(f"{bag}: " + "; ".join(problems))
    return [t for t in optional if t in have]


def iter_messages(
    bag: str | os.PathLike, reader: AnyReader, topics: Sequence[str]
) -> Iterator[tuple[str, int, object]]:
    """Yield ``(topic, log_time_ns, message)`` in log-time order, naming where a bag breaks."""
    conns = [c for c in reader.connections if c.topic in set(topics)]
    index, last = 0, None
    it = reader.messages(connections=conns)
    while True:
        try:
            conn, stamp, raw = next(it)
        except StopIteration:
            return
        except Exception as exc:
            where = f"after message {index}" + (
                f" ({last[0]} at t={last[1] / 1e9:.6f} s)" if last else " (at the start)"
            )
            detail = "".join(
                f"; {d}" for d in map(diagnose_storage_file, _storage_files(Path(bag))) if d
            )
            raise BagError(
                f"{bag}: bag is corrupt or truncated {where}: {exc}{detail}"
            ) from exc
        try:
            msg = reader.deserialize(raw, conn.msgtype)
        except Exception as exc:
            raise BagError(
                f"{bag}: message {index} on {conn.topic} at t={stamp / 1e9:.6f} s does not "
                f"deserialize as {conn.msgtype}: {exc}"
            ) from exc
        index += 1
        last = (conn.topic, stamp)
        yield conn.topic, stamp, msg


def header_stamp_ns(msg: object) -> int | None:
    """``header.stamp`` in ns, or None when the message has no header or a zero stamp."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    return ns or None
