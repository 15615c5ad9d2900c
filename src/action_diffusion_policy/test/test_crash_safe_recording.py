"""Recording that loses nothing, without DDS: a BagRecorder killed with SIGKILL, repaired;
torn and foreign files; the free-space guard and a real ENOSPC on a small tmpfs; gaps."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from action_diffusion_policy.data import bags
from action_diffusion_policy.data.bags import (
    BagError,
    BagRecorder,
    DiskFullError,
    EpisodeMetadata,
    iter_messages,
    open_bag,
    read_episode_record,
    typestore,
)
from action_diffusion_policy.data.repair_bag import main as repair_main
from action_diffusion_policy.data.repair_bag import repair_bag

TOPICS = {"/joints": "sensor_msgs/msg/JointState", "/cam": "sensor_msgs/msg/Image"}


def joint_bytes(i: int) -> bytes:
    store = typestore()
    T = store.types
    msg = T["sensor_msgs/msg/JointState"](
        header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=i // 100, nanosec=(i % 100) * 10_000_000),
            frame_id=""),
        name=["j"], position=np.array([float(i)]), velocity=np.zeros(0), effort=np.zeros(0))
    return bytes(store.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


def image_bytes(i: int, h: int = 48, w: int = 64) -> bytes:
    store = typestore()
    T = store.types
    msg = T["sensor_msgs/msg/Image"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                        frame_id=""),
        height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
        data=np.full(h * w * 3, i % 256, np.uint8))
    return bytes(store.serialize_cdr(msg, "sensor_msgs/msg/Image"))


def record(path: Path, n: int, image_every: int = 0, **kwargs) -> bags.RecordingStats:
    rec = BagRecorder(path, TOPICS, **kwargs)
    image = image_bytes(0, 240, 320)  # 230 kB: rosbags closes a chunk past 1 MiB
    for i in range(n):
        rec.put("/joints", 10_000_000 * i, joint_bytes(i))
        if image_every and i % image_every == 0:
            rec.put("/cam", 10_000_000 * i, image)
    return rec.stop(EpisodeMetadata(task="t"))


def positions(bag: Path) -> list[float]:
    with open_bag(bag) as reader:
        return [float(m.position[0]) for _t, _s, m in iter_messages(bag, reader, ["/joints"])]


# --- a killed recorder ---------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    sys.path[:0] = {paths!r}
    from test_crash_safe_recording import TOPICS, joint_bytes, image_bytes
    from action_diffusion_policy.data.bags import BagRecorder, EpisodeMetadata
    rec = BagRecorder({bag!r}, TOPICS, metadata=EpisodeMetadata(embodiment="aloha_sim",
                      task="transfer_cube"), flush_interval_s={flush})
    print("open", flush=True)
    i = 0
    while True:  # 100 Hz joints, 10 Hz images, until killed
        rec.put("/joints", 10_000_000 * i, joint_bytes(i))
        if i % 10 == 0:
            rec.put("/cam", 10_000_000 * i, image_bytes(i))
        print(i, flush=True)
        i += 1
        time.sleep(0.01)
""")


def kill_recorder_after(tmp_path, seconds: float, flush: float = 0.25) -> tuple[Path, int]:
    """A BagRecorder in its own process, SIGKILLed ``seconds`` after the bag opened; returns
    the bag and the index of the last message put."""
    bag = tmp_path / "episode"
    code = CHILD.format(paths=[str(Path(__file__).parent), *sys.path], bag=str(bag), flush=flush)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "open"
    end = time.monotonic() + seconds
    last = -1
    while time.monotonic() < end:
        last = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    for line in child.stdout:  # what it printed before the kill landed
        last = int(line)
    return bag, last


def test_a_killed_recorder_loses_at_most_its_flush_interval(tmp_path):
    flush = 0.25
    bag, last = kill_recorder_after(tmp_path, 2.0, flush)
    assert not (bag / "metadata.yaml").exists()
    early = read_episode_record(bag)  # written when the bag opened
    assert early["closed"] is False and early["topics"] == TOPICS
    assert early["task"] == "transfer_cube"
    with pytest.raises(BagError, match="repair_bag"), open_bag(bag):
        pass

    report = repair_bag(bag)
    out = Path(report.output)
    assert out == tmp_path / "episode.repaired" and (out / "metadata.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode", "episode.repaired"]
    got = positions(out)
    assert got == [float(i) for i in range(len(got))]  # a gapless prefix, in order
    # At 100 Hz, one flush interval plus scheduling is at most ~0.25 s + slack of messages.
    assert len(got) >= last + 1 - int(100 * (flush + 0.5)), (len(got), last)
    assert report.messages["/joints"] == len(got) and report.messages["/cam"] >= 1
    assert report.span_s == pytest.approx((len(got) - 1) * 0.01, abs=1e-6)
    meta = read_episode_record(out)
    assert meta["closed"] is True and meta["repaired"]["chunks"] == report.chunks
    assert meta["task"] == "transfer_cube" and meta["embodiment"] == "aloha_sim"
    # The original is only read; a second repair refuses to overwrite unless forced.
    assert not (bag / "metadata.yaml").exists()
    with pytest.raises(BagError, match="already exists"):
        repair_bag(bag)
    assert repair_bag(bag, force=True).messages == report.messages


def test_a_torn_last_chunk_is_dropped_and_counted(tmp_path):
    record(tmp_path / "whole", 3000, image_every=100)  # 7 MB in ~1 MiB chunks
    mcap = next((tmp_path / "whole").glob("*.mcap"))
    layout_size = mcap.stat().st_size
    broken = tmp_path / "broken"
    broken.mkdir()
    cut = int(layout_size * 0.6)
    (broken / mcap.name).write_bytes(mcap.read_bytes()[:cut])
    report = repair_bag(broken)
    got = positions(Path(report.output))
    assert 0 < len(got) < 3000 and got == [float(i) for i in range(len(got))]
    assert report.bytes_dropped > 0 and "torn" in report.stopped_because
    assert report.bytes_total == cut


@pytest.mark.parametrize("make, error", [
    (lambda d: None, "no .mcap file"),
    (lambda d: (d / "x.mcap").write_bytes(b"PK\x03\x04 a zip file, not MCAP" * 4),
     "not an MCAP file"),
    (lambda d: (d / "x.mcap").write_bytes(bags.MCAP_MAGIC + b"\x01" + (100).to_bytes(8, "little")),
     "no complete chunk"),
])
def test_bad_input_names_the_file_and_what_is_missing(tmp_path, make, error, capsys):
    bag = tmp_path / "bad"
    bag.mkdir()
    make(bag)
    with pytest.raises(BagError, match=error):
        repair_bag(bag)
    assert repair_main([str(bag)]) == 2
    assert str(bag) in capsys.readouterr().err
    assert not any(p.name.endswith(".repaired") or p.name.endswith(".tmp")
                   for p in tmp_path.iterdir())  # nothing half-written


def test_a_closed_bag_is_not_repaired(tmp_path):
    record(tmp_path / "ok", 10)
    with pytest.raises(BagError, match="already a closed bag"):
        repair_bag(tmp_path / "ok")


# --- disk full -----------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 12 MiB tmpfs where the machine allows mounting one (root), else skip."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_until_stopped(rec: BagRecorder, limit_s: float = 20.0) -> int:
    """230 kB images at ~100 Hz (23 MB/s, about two VGA cameras at 30 Hz) until the guard
    trips: ~2.3 MB between two free-space checks 0.1 s apart, inside the 4 MiB reserve."""
    data = image_bytes(0, 240, 320)
    i = 0
    end = time.monotonic() + limit_s
    while not rec.disk_full and time.monotonic() < end:
        rec.put("/cam", 10_000_000 * i, data)
        i += 1
        time.sleep(0.01)
    return i


def test_the_free_space_guard_closes_the_episode_cleanly_on_a_small_disk(small_fs):
    reserve = 4 * 2**20
    rec = BagRecorder(small_fs / "ep", TOPICS, flush_interval_s=0.1, min_free_bytes=reserve)
    fill_until_stopped(rec)
    assert rec.disk_full.startswith(f"disk full: {small_fs / 'ep'} has ")
    stats = rec.stop(EpisodeMetadata(task="t"))
    assert stats.stopped_by == "disk_full" and stats.written["/cam"] > 5 and stats.lost >= 0
    with open_bag(small_fs / "ep") as reader:  # closed cleanly: readable, every CRC checked
        assert sum(c.msgcount for c in reader.connections) == stats.written["/cam"]
    assert read_episode_record(small_fs / "ep")["stopped_by"] == "disk_full"
    # The next episode is refused while the space is short.
    with pytest.raises(DiskFullError, match="min_free_mb"):
        BagRecorder(small_fs / "ep2", TOPICS, min_free_bytes=reserve)


def test_the_free_space_guard_with_an_injected_free_space(tmp_path, monkeypatch):
    """The same guard where no small filesystem can be mounted: free space as reported by a
    stand-in for statvfs."""
    free = {"bytes": 10 * 2**30}
    monkeypatch.setattr(bags, "free_bytes", lambda path: free["bytes"])
    rec = BagRecorder(tmp_path / "ep", TOPICS, flush_interval_s=0.05, min_free_bytes=2**20)
    for i in range(50):
        rec.put("/joints", 10_000_000 * i, joint_bytes(i))
    time.sleep(0.3)
    free["bytes"] = 2**19  # the disk fills
    end, i = time.monotonic() + 5, 50
    while not rec.disk_full and time.monotonic() < end:
        rec.put("/joints", 10_000_000 * i, joint_bytes(i))
        i += 1
        time.sleep(0.01)
    assert "0.5 MiB free" in rec.disk_full and "1.0 MiB in reserve" in rec.disk_full
    stats = rec.stop(EpisodeMetadata())
    assert stats.stopped_by == "disk_full" and stats.written["/joints"] >= 50
    assert positions(tmp_path / "ep")[:50] == [float(i) for i in range(50)]
    with pytest.raises(DiskFullError):
        BagRecorder(tmp_path / "ep2", TOPICS, min_free_bytes=2**20)
    free["bytes"] = 10 * 2**30  # space is back: recording starts again
    record(tmp_path / "ep3", 5, min_free_bytes=2**20)


def test_a_real_enospc_is_reported_and_the_written_chunks_recovered(small_fs, tmp_path):
    rec = BagRecorder(small_fs / "ep", TOPICS, flush_interval_s=0.1, min_free_bytes=0)
    data = image_bytes(0, 240, 320)
    i = 0
    while rec._error is None and i < 2000:  # 2000 x 230 kB > 12 MiB: must hit ENOSPC
        rec.put("/cam", 10_000_000 * i, data)
        i += 1
        time.sleep(0.002)
    with pytest.raises(BagError, match=r"MiB free.*repair_bag") as err:
        rec.stop(EpisodeMetadata())
    assert "No space left" in str(err.value) or "28" in str(err.value)
    report = repair_bag(small_fs / "ep", tmp_path / "recovered")
    assert report.messages["/cam"] > 5


# --- gaps ----------------------------------------------------------------------------------------


def test_a_topic_that_stops_is_recorded_as_a_gap(tmp_path):
    rec = BagRecorder(tmp_path / "ep", TOPICS, gap_s=0.5)
    for i in range(300):  # 3 s at 100 Hz; the camera (10 Hz) dies at 1 s and never returns
        rec.put("/joints", 10_000_000 * i, joint_bytes(i))
        if i % 10 == 0 and i <= 100:
            rec.put("/cam", 10_000_000 * i, image_bytes(i))
    stats = rec.stop(EpisodeMetadata())
    assert stats.gaps == {"/cam": [[1.0, 2.99]]}
    assert json.loads((tmp_path / "ep" / "episode.json").read_text())["gaps"] == stats.gaps
