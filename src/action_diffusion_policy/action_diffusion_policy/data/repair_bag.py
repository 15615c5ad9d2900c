"""Recover an unclosed MCAP recording (a killed recorder, a power cut) up to its last complete
chunk, as a new bag beside it: ``rosbag2``'s ``ros2 bag reindex``, for our bags.

    python -m action_diffusion_policy.data.repair_bag BAG_DIR [-o OUT] [--force] [--no-progress]

An MCAP file is written as a stream of records; a chunk holds a batch of messages and, in the
first chunk, the schemas and channels. A recorder killed mid-write leaves complete chunks
followed by a torn one, and no summary, footer or ``metadata.yaml``. This tool walks the
records, keeps every schema, channel and message of every complete chunk (and loose records
outside chunks), stops at the first torn or damaged record, and writes what it kept as a new
bag through rosbags' writer: ``BAG_DIR.repaired`` by default, built in a temporary directory and
renamed into place, with ``metadata.yaml``, CRCs and an ``episode.json`` carrying the original's
early record plus what was recovered. The original is only read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import struct
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from action_diffusion_policy.data.bags import (
    MCAP_MAGIC,
    BagError,
    EpisodeMetadata,
    _decompress_chunk,
    _write_sidecar,
    chunk_fields,
    read_episode_record,
    typestore,
    write_bag_crcs,
)

REPAIRED_SUFFIX = ".repaired"
_SCHEMA, _CHANNEL, _MESSAGE, _CHUNK, _FOOTER, _DATA_END = 0x03, 0x04, 0x05, 0x06, 0x02, 0x0F


@dataclass
class RepairReport:
    """What a repair recovered from one bag."""

    source: str
    output: str
    messages: dict[str, int] = field(default_factory=dict)  # topic -> messages recovered
    start_s: float | None = None  # log time of the first and last message recovered
    end_s: float | None = None
    chunks: int = 0  # complete chunks read
    bytes_total: int = 0  # size of the storage files
    bytes_dropped: int = 0  # bytes after the last complete record (the torn chunk)
    stopped_because: str = ""  # why the walk stopped before the end ("" : a complete file)
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why

    @property
    def span_s(self) -> float:
        return 0.0 if self.start_s is None else self.end_s - self.start_s


class _Cursor:
    """Little-endian MCAP primitives over one record's bytes."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, fmt: str):
        value = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value[0] if len(value) == 1 else value

    def string(self) -> str:
        n = self.take("<I")
        text = self.data[self.at : self.at + n]
        if len(text) != n:
            raise struct.error("string runs past the record")
        self.at += n
        return text.decode()

    def rest(self) -> bytes:
        return self.data[self.at :]


@dataclass
class _Recovered:
    """Records of one complete chunk (or one loose record), before they reach the sink."""

    schemas: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (name, encoding)
    channels: dict[int, tuple[str, int]] = field(default_factory=dict)  # id -> (topic, schema)
    messages: list[tuple[int, int, bytes]] = field(default_factory=list)  # (channel, log, data)


class _BagSink:
    """Streams recovered records into a rosbags writer: channels before their messages, as MCAP
    orders them, so memory holds one chunk at a time, not the recording."""

    def __init__(self, writer: Writer, report: RepairReport, topic_types: dict[str, str]):
        self.writer, self.report, self.topic_types = writer, report, topic_types
        self.store = typestore()
        self.schemas: dict[int, str] = {}
        self.conns: dict[int, object] = {}
        self.known_channels: set[int] = set()

    def take(self, rec: _Recovered) -> None:
        report = self.report
        for sid, (name, _encoding) in rec.schemas.items():
            self.schemas[sid] = name
        for cid, (topic, sid) in rec.channels.items():
            if cid in self.known_channels:
                continue
            self.known_channels.add(cid)
            msgtype = self.schemas.get(sid) or self.topic_types.get(topic, "")
            if msgtype not in self.store.fielddefs:
                report.skipped_topics[topic] = f"message type {msgtype or '?'} is unknown here"
                continue
            self.conns[cid] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        for cid, log_time, data in rec.messages:
            conn = self.conns.get(cid)
            if conn is None:
                if cid not in self.known_channels:
                    report.skipped_topics.setdefault(f"channel {cid}", "no channel record")
                continue
            self.writer.write(conn, log_time, data)
            report.messages[conn.topic] = report.messages.get(conn.topic, 0) + 1
            t = log_time / 1e9
            report.start_s = t if report.start_s is None else min(report.start_s, t)
            report.end_s = t if report.end_s is None else max(report.end_s, t)


def _read_records(data: bytes, out: _Recovered) -> None:
    """Schemas, channels and messages among a run of complete records (a chunk's content)."""
    at = 0
    while at + 9 <= len(data):
        opcode, length = data[at], int.from_bytes(data[at + 1 : at + 9], "little")
        body = data[at + 9 : at + 9 + length]
        if len(body) != length:
            raise struct.error("record runs past its chunk")
        _read_record(opcode, body, out)
        at += 9 + length


def _read_record(opcode: int, body: bytes, out: _Recovered) -> None:
    c = _Cursor(body)
    if opcode == _SCHEMA:
        sid, name, encoding = c.take("<H"), c.string(), c.string()
        out.schemas[sid] = (name, encoding)
    elif opcode == _CHANNEL:
        cid, sid, topic = c.take("<H"), c.take("<H"), c.string()
        out.channels[cid] = (topic, sid)
    elif opcode == _MESSAGE:
        cid, _sequence, log_time, _publish_time = c.take("<HIQQ")
        out.messages.append((cid, log_time, c.rest()))


def scan_mcap(path: Path, sink: _BagSink, report: RepairReport, bar=None) -> None:
    """Walk one MCAP file's records into ``sink`` up to the first torn or damaged one
    (``bar``: a tqdm progress bar counting bytes)."""
    size = path.stat().st_size
    report.bytes_total += size
    with open(path, "rb") as f:
        if f.read(8) != MCAP_MAGIC:
            raise BagError(f"{path}: not an MCAP file (its first bytes are not the MCAP magic)")
        offset = 8
        while True:
            head = f.read(9)
            if len(head) < 9:
                if head:
                    report.stopped_because = f"a record header is torn at byte {offset}"
                else:
                    report.stopped_because = f"the file ends at byte {offset} without a footer"
                break
            opcode, length = head[0], int.from_bytes(head[1:], "little")
            body = f.read(length) if offset + 9 + length <= size else b""
            if len(body) != length or (offset + 9 + length > size):
                report.stopped_because = (
                    f"the record at byte {offset} (opcode {opcode:#04x}) is torn: it should end "
                    f"at byte {offset + 9 + length}, the file ends at byte {size}"
                )
                break
            if opcode == 0x00 or opcode > 0x0F:
                report.stopped_because = f"a corrupt record (opcode {opcode:#x}) at byte {offset}"
                break
            if opcode in (_FOOTER, _DATA_END):
                offset += 9 + length
                break  # the data section is complete: nothing is torn
            staged = _Recovered()
            try:
                if opcode == _CHUNK:
                    _read_chunk(offset, body, staged)
                else:
                    _read_record(opcode, body, staged)
            except (struct.error, UnicodeDecodeError, BagError) as exc:
                report.stopped_because = f"the record at byte {offset} is damaged ({exc})"
                break
            sink.take(staged)  # all of a chunk or none of it
            if bar is not None:
                bar.update(9 + length)
            report.chunks += opcode == _CHUNK
            offset += 9 + length
        report.bytes_dropped += size - offset if report.stopped_because else 0


def _read_chunk(offset: int, body: bytes, out: _Recovered) -> None:
    crc, usize, compression, records = chunk_fields(body, strict=True)
    raw = _decompress_chunk(compression, records, usize)
    if raw is None:
        raise BagError(f"chunk at byte {offset} uses compression {compression!r}, unreadable here")
    if crc and zlib.crc32(raw) != crc:
        raise BagError(f"chunk at byte {offset} fails its CRC check")
    _read_records(raw, out)


def default_output(bag: Path) -> Path:
    return bag.with_name(bag.name + REPAIRED_SUFFIX)


def repair_bag(bag: str | os.PathLike, output: str | os.PathLike | None = None,
               force: bool = False, progress: bool = False) -> RepairReport:  # fmt: skip
    """Write the complete chunks of the unclosed bag ``bag`` as a new bag (see module doc)."""
    bag = Path(bag)
    if not bag.is_dir():
        raise BagError(f"{bag}: no such bag directory")
    if (bag / "metadata.yaml").is_file():
        raise BagError(f"{bag}: already a closed bag (it has metadata.yaml); nothing to repair")
    files = sorted(bag.glob("*.mcap"))
    if not files:
        raise BagError(f"{bag}: no .mcap file in it; nothing to repair (sqlite3 bags are "
                       "crash-safe on their own: open them with `ros2 bag reindex`)")
    output = Path(output) if output is not None else default_output(bag)
    if output.exists() and not force:
        raise BagError(f"{output} already exists; pass --force to replace it")
    report = RepairReport(str(bag), str(output))
    record = read_episode_record(bag)
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = None
    try:
        writer = Writer(tmp, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        sink = _BagSink(writer, report, record.get("topics", {}))
        with tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
                  desc=f"repair {bag.name}", disable=not progress) as bar:  # fmt: skip
            for file in files:
                scan_mcap(file, sink, report, bar)
        if not report.messages:
            raise BagError(
                f"{bag}: no complete chunk with messages in {', '.join(f.name for f in files)}"
                f" ({report.stopped_because or 'empty'}): the recording ended before its first "
                "flush, nothing to recover"
            )
        meta = EpisodeMetadata.from_dict(record) if record else EpisodeMetadata(recorder="")
        meta.notes = (meta.notes + "; " if meta.notes else "") + (
            f"repaired from an unclosed recording ({report.stopped_because or 'complete'})"
        )
        meta.extra = {**meta.extra, "repaired": _report_dict(report)}
        for key, value in meta.to_custom_data().items():
            writer.set_custom_data(key, value)
        writer.close()
        write_bag_crcs(tmp)
        _write_sidecar(tmp, meta, report.messages, topics=record.get("topics", {}), closed=True,
                       repaired=_report_dict(report))  # fmt: skip
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _report_dict(report: RepairReport) -> dict:
    d = asdict(report)
    d["span_s"] = round(report.span_s, 3)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="repair_bag",
        description="Recover an unclosed MCAP bag up to its last complete chunk, as a new bag.",
    )
    ap.add_argument("bag", help="the unclosed bag directory (an .mcap, no metadata.yaml)")
    ap.add_argument("-o", "--output", help=f"new bag directory (default: BAG{REPAIRED_SUFFIX})")
    ap.add_argument("--force", action="store_true", help="replace an existing output")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    try:
        report = repair_bag(a.bag, a.output, a.force, progress=not a.no_progress)
    except BagError as exc:
        print(f"repair_bag: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(_report_dict(report), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
