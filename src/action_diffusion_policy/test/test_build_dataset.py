"""Dataset builder: the resampling rule on hand-made timestamps, actions, images, bad input."""

import json
import os

import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from action_diffusion_policy.data.bags import STORAGES, BagError, typestore
from action_diffusion_policy.data.build_dataset import build_dataset, main
from action_diffusion_policy.data.format import DatasetReader
from action_diffusion_policy.data.resample import latest_at_or_before, resample, sort_stamps
from action_diffusion_policy.testing.synthetic_bag import write_synthetic_bag

T0 = 1_000_000_000_000


# ---------------------------------------------------------------------------- the rule itself


def test_latest_at_or_before_never_takes_a_future_sample():
    stamps = np.array([10, 20, 20, 30])
    ticks = np.array([5, 10, 19, 20, 29, 31])
    # -1: nothing yet; a sample stamped exactly at the tick counts; among equal stamps the last.
    assert latest_at_or_before(stamps, ticks).tolist() == [-1, 0, 0, 2, 2, 3]


def test_resample_drops_stale_ticks_counts_them_and_splits_segments():
    ms = 1_000_000
    fast = np.arange(0, 200, 10) * ms  # 100 Hz, 0..190 ms
    slow = np.array([0, 20, 40, 60, 150, 170, 190]) * ms  # a 90 ms hole after 60 ms
    res = resample({"fast": fast, "slow": slow}, frequency=50.0, max_staleness_s=0.025)
    assert res.total_ticks == 10  # 0, 20, ..., 180 ms
    # Ticks 100 and 120 ms (and 140) see slow's 60 ms sample: 40, 60, 80 ms old > 25 ms.
    assert res.stale == {"fast": 0, "slow": 3}
    assert res.dropped == 3
    assert (res.ticks // ms).tolist() == [0, 20, 40, 60, 80, 160, 180]
    assert [(s.start, s.stop) for s in res.segments()] == [(0, 5), (5, 7)]
    # Every kept tick took a sample at or before it.
    for name, s in {"fast": fast, "slow": slow}.items():
        assert np.all(s[res.indices[name]] <= res.ticks)


def test_sort_stamps_is_stable():
    s, order = sort_stamps([30, 10, 10, 20])
    assert s.tolist() == [10, 10, 20, 30] and order.tolist() == [1, 2, 3, 0]


# ---------------------------------------------------------------------------- builder


def _stamps(start, stop, hz, phase=0.0):
    return np.round(np.arange(start, stop, 1.0 / hz) + phase, 9)


@pytest.fixture
def bag(tmp_path):
    js = _stamps(0, 2, 50, 0.003)  # joint states 3 ms after the control grid
    return write_synthetic_bag(tmp_path / "bags" / "ep0", js, js + 0.001, _stamps(0, 2, 30),
                               js, image_size=(48, 64))


def test_builder_takes_latest_sample_at_or_before_each_tick(bag, tmp_path):
    report = build_dataset(bags=[bag.parent], output=tmp_path / "ds", image_size=(48, 64),
                           progress=False)
    ds = DatasetReader(tmp_path / "ds")
    assert report["frames"] == ds.num_frames == 99 and report["dropped_ticks"] == 0
    ticks = 0.004 + np.arange(ds.num_frames) / 50.0  # first tick: every input has a sample
    js = _stamps(0, 2, 50, 0.003)
    want_js = js[np.searchsorted(js, ticks + 1e-9, side="right") - 1]
    np.testing.assert_allclose(ds.state[:, 0], want_js, atol=1e-6)  # right waist
    np.testing.assert_allclose(ds.state[:, 50], want_js, atol=1e-6)  # left waist
    np.testing.assert_allclose(ds.action[:, 0], want_js + 0.001 + 1000.0, atol=1e-4)
    np.testing.assert_allclose(ds.env_state[:, 0], want_js, atol=1e-6)
    cams = _stamps(0, 2, 30)
    want_frame = np.searchsorted(cams, ticks + 1e-9, side="right") - 1
    assert ds.images["cam_high"][:, 0, 0, 0].tolist() == want_frame.tolist()
    assert ds.meta.env_state_dim == 7 and ds.meta.action_source == "command"
    assert ds.meta.episodes[0].instruction == "pick up the cube" and ds.meta.episodes[0].success
    assert ds.meta.extra["build"]["per_bag"][0]["ticks"] == 99
    # The state mask and action slots come from the embodiment.
    assert ds.meta.action_slots == [0, 1, 2, 3, 4, 5, 10, 50, 51, 52, 53, 54, 55, 60]
    assert np.all(ds.action[:, [s for s in range(128) if s not in ds.meta.action_slots]] == 0)


def test_builder_drops_stale_ticks_and_splits_the_episode(tmp_path):
    js = np.concatenate([_stamps(0, 1, 50, 0.003), _stamps(1.5, 2.5, 50, 0.003)])  # 0.5 s hole
    bag = write_synthetic_bag(tmp_path / "gap", js, js, None, None)
    report = build_dataset(bags=[bag], output=tmp_path / "ds", max_staleness=0.1,
                           progress=False)
    ds = DatasetReader(tmp_path / "ds")
    per = report["per_bag"][0]
    # Last sample before the hole: 0.983 s. Ticks 1.103 .. 1.483 s (20 on the 20 ms grid) see
    # samples more than 100 ms old; 1.083 s is exactly 100 ms old and stays.
    assert per["dropped"] == report["dropped_ticks"] == 20
    assert per["stale"]["/follower_left/joint_states"] == 20
    assert ds.num_episodes == 2 and per["segments"] == 2
    assert ds.meta.episodes[1].source == "gap#1"
    assert ds.num_frames == per["ticks"] - 20
    assert per["stale_s"] == {f"/follower_{arm}/{topic}": 0.4 for arm in ("left", "right")
                              for topic in ("joint_states", "commands/joint_positions")}
    assert report["stale_s"] == per["stale_s"]
    # --on-gap skip: the episode with the hole is left out, and the report says why.
    with pytest.raises(BagError, match="no frame survived") as e:
        build_dataset(bags=[bag], output=tmp_path / "ds2", on_gap="skip", progress=False)
    assert "stale for 0.40 s" in str(e.value)


def test_unclosed_recordings_are_named_or_repaired(bag, tmp_path, capsys):
    """A killed recorder's bag (complete chunks, a torn one, no metadata.yaml) among good ones:
    an error that names it and the fix; --repair recovers it beside the original."""
    whole = write_synthetic_bag(tmp_path / "whole", _stamps(0, 4, 50), _stamps(0, 4, 50),
                                _stamps(0, 4, 30), None, image_size=(120, 160))  # ~7 chunks
    data = (whole / "whole.mcap").read_bytes()
    killed = bag.parent / "ep1"
    killed.mkdir()
    (killed / "ep1.mcap").write_bytes(data[: int(len(data) * 0.75)])
    out = tmp_path / "ds"
    with pytest.raises(BagError, match=r"ep1: an unclosed recording.*repair_bag .*ep1.*--repair"):
        build_dataset(bags=[bag.parent], output=out, image_size=(24, 32), progress=False)
    assert main([str(bag.parent), "-o", str(out), "--image-size", "24", "32", "--no-env-state",
                 "--no-progress"]) == 2
    assert not out.exists()

    report = build_dataset(bags=[bag.parent], output=out, image_size=(24, 32), repair=True,
                           env_state=False, progress=False)
    assert sorted(p.name for p in bag.parent.iterdir()) == ["ep0", "ep1", "ep1.repaired"]
    assert not (killed / "metadata.yaml").exists()  # the original is untouched
    assert (killed / "ep1.mcap").read_bytes() == data[: int(len(data) * 0.75)]
    per = {r["bag"]: r for r in report["per_bag"]}
    recovered = per[str(bag.parent / "ep1.repaired")]["frames"]
    assert 0.5 * 200 < recovered < 200  # a prefix of the 4 s at 50 Hz
    # The repaired copy is found next time without --repair, and not read twice.
    again = build_dataset(bags=[bag.parent], output=out, image_size=(24, 32), env_state=False,
                          force=True, progress=False)
    assert again["bags"] == 2 and again["frames"] == report["frames"]


def test_next_state_action(bag, tmp_path):
    build_dataset(bags=[bag], output=tmp_path / "ds", action_source="next_state",
                  image_size=(24, 32), progress=False)
    ds = DatasetReader(tmp_path / "ds")
    assert ds.num_frames == 98  # the last tick has no next state
    slots = ds.meta.action_slots
    np.testing.assert_array_equal(ds.action[:-1][:, slots], ds.state[1:][:, slots])
    assert ds.meta.action_source == "next_state"


def test_compressed_images_and_sqlite3(tmp_path):
    js = _stamps(0, 1, 50)
    bag = write_synthetic_bag(tmp_path / "c", js, js, _stamps(0, 1, 30), None, compressed=True,
                              storage="sqlite3", image_size=(32, 48))
    assert (bag / "c.db3").is_file()
    build_dataset(bags=[bag], output=tmp_path / "ds", image_size=(16, 24), progress=False)
    ds = DatasetReader(tmp_path / "ds")
    assert ds.images["cam_high"].shape == (ds.num_frames, 16, 24, 3)
    assert abs(int(ds.images["cam_high"][5, 8, 8, 1]) - 100) <= 1  # png is lossless
    assert ds.meta.env_state_dim == 0  # no episode status in this bag


# ---------------------------------------------------------------------------- bad input


def test_missing_topics_are_listed(tmp_path):
    js = _stamps(0, 1, 50)
    bag = write_synthetic_bag(tmp_path / "nocmd", js, None, None, None)
    with pytest.raises(BagError) as e:
        build_dataset(bags=[bag], output=tmp_path / "ds", progress=False)
    msg = str(e.value)
    assert "nocmd" in msg and "/follower_left/commands/joint_positions" in msg
    assert "/follower_right/commands/joint_positions" in msg
    with pytest.raises(BagError, match="missing camera topics: cam_wrist"):
        build_dataset(bags=[bag], output=tmp_path / "ds", cameras=["cam_wrist"],
                      action_source="next_state", progress=False)
    assert not (tmp_path / "ds").exists()


def test_message_type_mismatch_is_named(tmp_path):
    store = typestore()
    path = tmp_path / "wrongtype"
    with Writer(path, version=9, storage_plugin=STORAGES["mcap"]) as w:
        for arm in ("left", "right"):
            c = w.add_connection(f"/follower_{arm}/joint_states", "std_msgs/msg/String",
                                 typestore=store)
            msg = store.types["std_msgs/msg/String"](data="x")
            w.write(c, T0, store.serialize_cdr(msg, "std_msgs/msg/String"))
    with pytest.raises(BagError, match=r"/follower_left/joint_states has type "
                                       r"std_msgs/msg/String, expected sensor_msgs/msg/JointState"):
        build_dataset(bags=[path], output=tmp_path / "ds", embodiment="aloha_sim",
                      action_source="next_state", progress=False)


def test_cameras_outside_the_embodiment_config_are_found(tmp_path):
    js = _stamps(0, 1, 50)
    bag = write_synthetic_bag(tmp_path / "zed", js, js, _stamps(0, 1, 30), None,
                              camera_topics=("/zed/left/image_raw",))
    build_dataset(bags=[bag], output=tmp_path / "ds", image_size=(24, 32), progress=False)
    assert DatasetReader(tmp_path / "ds").meta.camera_names == ["left"]


def test_camera_topic_of_wrong_type_is_named(tmp_path):
    store = typestore()
    path = write_synthetic_bag(tmp_path / "b", _stamps(0, 1, 50), _stamps(0, 1, 50))
    bad = tmp_path / "cam_string"
    with Writer(bad, version=9, storage_plugin=STORAGES["mcap"]) as w:
        c = w.add_connection("/cameras/cam_high/image_raw", "std_msgs/msg/String",
                             typestore=store)
        w.write(c, T0, store.serialize_cdr(store.types["std_msgs/msg/String"](data="x"),
                                           "std_msgs/msg/String"))
    with pytest.raises(BagError, match=r"/cameras/cam_high/image_raw has type "
                                       r"std_msgs/msg/String, expected sensor_msgs/msg/Image"):
        build_dataset(bags=[bad, path], output=tmp_path / "ds", embodiment="aloha_sim",
                      progress=False)


def test_truncated_bag_names_file_and_offset_and_writes_nothing(bag, tmp_path):
    good = write_synthetic_bag(tmp_path / "bags" / "ep1", _stamps(0, 1, 50), _stamps(0, 1, 50),
                               _stamps(0, 1, 30), _stamps(0, 1, 50))
    mcap = good / "ep1.mcap"
    size = mcap.stat().st_size
    with open(mcap, "r+b") as f:
        f.truncate(size // 2)
    out = tmp_path / "ds"
    with pytest.raises(BagError) as e:
        build_dataset(bags=[bag.parent], output=out, image_size=(24, 32), progress=False)
    msg = str(e.value)
    assert "ep1" in msg and "ep1.mcap: truncated at byte" in msg and str(size // 2) in msg
    # The first bag was fine and already converted; still nothing may be left behind.
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("ds.tmp")]


def test_corrupt_sqlite_bag_is_named(tmp_path):
    js = _stamps(0, 1, 50)
    bag = write_synthetic_bag(tmp_path / "sq", js, js, None, None, storage="sqlite3")
    db = bag / "sq.db3"
    data = bytearray(db.read_bytes())
    data[100:4000] = os.urandom(3900)
    db.write_bytes(bytes(data))
    with pytest.raises(BagError, match="sq"):
        build_dataset(bags=[bag], output=tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_existing_output_needs_force(bag, tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = [str(bag), "-o", str(out), "--image-size", "24", "32", "--no-progress"]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main([*args, "--force"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 99
    assert not (out / "keep.txt").exists() and DatasetReader(out).num_frames == 99
