"""Bag integrity: the recorder's MCAP files carry CRCs, and a flipped byte is caught on read."""

import struct
import zlib

import numpy as np
import pytest

from action_diffusion_policy.data.bags import (
    BagError,
    BagIntegrityError,
    BagRecorder,
    EpisodeMetadata,
    iter_messages,
    open_bag,
    read_episode_metadata,
    typestore,
)

IMAGE = "/cameras/cam_high/image_raw"
JOINTS = "/follower_left/joint_states"
N_IMAGES, N_JOINTS = 12, 60


def _record(path):
    """A bag from BagRecorder: 12 images of 240x320 (about 3 chunks of 1 MiB) and joint states."""
    store = typestore()
    T = store.types
    topics = {IMAGE: "sensor_msgs/msg/Image", JOINTS: "sensor_msgs/msg/JointState"}
    recorder = BagRecorder(path, topics)
    rng = np.random.default_rng(0)
    for i in range(N_JOINTS):
        t = 1_000_000_000 + i * 20_000_000
        stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
        header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="")
        js = T["sensor_msgs/msg/JointState"](
            header=header, name=["waist"], position=np.array([i * 0.01]),
            velocity=np.zeros(1), effort=np.zeros(0))  # fmt: skip
        recorder.put(JOINTS, t, bytes(store.serialize_cdr(js, "sensor_msgs/msg/JointState")))
        if i % 5 == 0:
            pixels = rng.integers(0, 255, 240 * 320 * 3, dtype=np.uint8)
            image = T["sensor_msgs/msg/Image"](
                header=header, height=240, width=320, encoding="rgb8", is_bigendian=0,
                step=960, data=pixels)  # fmt: skip
            recorder.put(IMAGE, t, bytes(store.serialize_cdr(image, "sensor_msgs/msg/Image")))
    stats = recorder.stop(EpisodeMetadata(embodiment="aloha_sim", task="t", success=True))
    assert stats.lost == 0
    return path


def _chunks(mcap):
    """(record offset, stored CRC, start of its records) of every chunk, walking the file."""
    data = mcap.read_bytes()
    out, offset = [], 8
    while offset < len(data):
        opcode, length = data[offset], int.from_bytes(data[offset + 1 : offset + 9], "little")
        if opcode == 0x06:
            body = offset + 9
            n = struct.unpack_from("<I", data, body + 28)[0]
            out.append((offset, struct.unpack_from("<I", data, body + 24)[0], body + 40 + n))
        if opcode == 0x0F:  # DataEnd
            break
        offset += 9 + length
    return out


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return _record(tmp_path_factory.mktemp("bags") / "episode")


def test_recorded_chunks_carry_correct_crcs(bag):
    (mcap,) = bag.glob("*.mcap")
    chunks = _chunks(mcap)
    assert len(chunks) >= 2
    data = mcap.read_bytes()
    for offset, crc, records in chunks:
        size = struct.unpack_from("<Q", data, offset + 9 + 16)[0]  # uncompressed = stored size
        assert crc != 0 and crc == zlib.crc32(data[records : records + size]), offset
    assert (bag / "metadata.yaml").is_file()
    assert read_episode_metadata(bag).embodiment == "aloha_sim"


def test_intact_bag_reads_as_before(bag):
    with open_bag(bag) as reader:
        got = list(iter_messages(bag, reader, [IMAGE, JOINTS]))
    assert sum(topic == JOINTS for topic, _, _ in got) == N_JOINTS
    assert sum(topic == IMAGE for topic, _, _ in got) == N_IMAGES
    assert [m.position[0] for t, _, m in got if t == JOINTS] == pytest.approx(
        [i * 0.01 for i in range(N_JOINTS)]
    )


def test_official_mcap_reader_validates_every_crc(bag):
    """The reference reader (Foxglove's `mcap` package) checks chunk, data and summary CRCs."""
    pytest.importorskip("mcap")
    from mcap.reader import make_reader
    from mcap.records import DataEnd, Footer
    from mcap.stream_reader import StreamReader

    (mcap,) = bag.glob("*.mcap")
    with open(mcap, "rb") as f:
        records = list(StreamReader(f, validate_crcs=True).records)
    assert next(r for r in records if isinstance(r, DataEnd)).data_section_crc != 0
    assert next(r for r in records if isinstance(r, Footer)).summary_crc != 0
    with open(mcap, "rb") as f:
        reader = make_reader(f, validate_crcs=True)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics.message_count == N_JOINTS + N_IMAGES
        assert {c.topic for c in summary.channels.values()} == {IMAGE, JOINTS}
        assert summary.schemas and all(s.encoding == "ros2msg" for s in summary.schemas.values())
        assert sum(1 for _ in reader.iter_messages()) == N_JOINTS + N_IMAGES


@pytest.mark.parametrize("which", [0, -1])
def test_flipped_byte_in_a_chunk_names_bag_chunk_and_offset(bag, tmp_path, which):
    import shutil

    copy = tmp_path / "episode"
    shutil.copytree(bag, copy)
    (mcap,) = copy.glob("*.mcap")
    chunks = _chunks(mcap)
    offset, _, records = chunks[which]
    data = bytearray(mcap.read_bytes())
    data[records + 1000] ^= 0x10  # one bit inside a message of that chunk
    mcap.write_bytes(bytes(data))
    number = len(chunks) if which == -1 else 1
    pattern = rf"{copy}: {mcap.name}: chunk {number} of {len(chunks)} \(record at byte {offset}\)"
    with pytest.raises(BagIntegrityError, match=pattern) as error, open_bag(copy):
        pass
    assert isinstance(error.value, BagError)  # callers that catch BagError still do
    assert "fails its CRC check" in str(error.value)


def test_flipped_byte_outside_chunks_fails_the_data_section_crc(bag, tmp_path):
    import shutil

    copy = tmp_path / "episode"
    shutil.copytree(bag, copy)
    (mcap,) = copy.glob("*.mcap")
    offset, _, _ = _chunks(mcap)[0]
    data = bytearray(mcap.read_bytes())
    data[offset + 9 + 8] ^= 0x01  # the chunk's message_end_time: not in its records
    mcap.write_bytes(bytes(data))
    with pytest.raises(BagIntegrityError, match=r"data section \(bytes 0 to \d+\)"), open_bag(copy):
        pass


def test_bag_without_crcs_still_reads(sample_bag):
    """Bags from other writers (CRC 0: not computed), like the shipped sample, read as before."""
    (mcap,) = sample_bag.glob("*.mcap")
    assert all(crc == 0 for _, crc, _ in _chunks(mcap))
    with open_bag(sample_bag) as reader:
        assert next(iter_messages(sample_bag, reader, [JOINTS]))[0] == JOINTS
