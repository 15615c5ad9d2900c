"""LeRobotDataset v3 export/import: layout HF tools expect, and a lossless round trip of the
low-dimensional data (frames through H.264 come back close, not equal)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from action_diffusion_policy.data.format import DatasetMeta, DatasetReader, DatasetWriter
from action_diffusion_policy.data.lerobot import LeRobotError, export_lerobot, import_lerobot


def _make_dataset(path, n_eps=2, length=12, size=(16, 24)):
    mask = np.zeros(128, bool)
    mask[[0, 1, 10, 50, 51, 60]] = True
    meta = DatasetMeta(embodiment="aloha_sim", control_frequency=50.0, camera_names=["cam_high"],
                       image_size=size, state_mask=mask.tolist(), action_slots=[0, 1, 10, 50],
                       env_state_dim=7)
    rng = np.random.default_rng(0)
    with DatasetWriter(path, meta) as w:
        for e in range(n_eps):
            state = np.zeros((length, 128), np.float32)
            state[:, mask] = rng.normal(size=(length, mask.sum()))
            action = np.zeros((length, 128), np.float32)
            action[:, [0, 1, 10, 50]] = rng.normal(size=(length, 4))
            # smooth frames (video codecs keep these close)
            yy, xx = np.mgrid[: size[0], : size[1]]
            frames = np.stack([np.stack([(xx * 8 + t * 3) % 256, yy * 10, np.full_like(xx, 40 * e)],
                                        -1) for t in range(length)]).astype(np.uint8)
            w.add_episode(state, action, {"cam_high": frames},
                          rng.normal(size=(length, 7)).astype(np.float32),
                          task="transfer_cube", instruction=f"task {e}", success=e == 0,
                          source=f"bag_{e}")
    return path


def test_export_layout_and_round_trip(tmp_path):
    src = _make_dataset(tmp_path / "ds")
    lr = export_lerobot(src, tmp_path / "lr", crf=0, progress=False)
    info = json.loads((lr / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["total_frames"] == 24 and info["total_episodes"] == 2 and info["total_tasks"] == 2
    assert info["features"]["observation.images.cam_high"]["dtype"] == "video"
    data = pq.read_table(lr / "data/chunk-000/file-000.parquet")
    assert data.num_rows == 24
    assert data.column("episode_index").to_pylist() == [0] * 12 + [1] * 12
    assert data.column("frame_index").to_pylist()[12] == 0
    eps = pq.read_table(lr / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in eps] == [12, 12]
    assert eps[1]["videos/observation.images.cam_high/from_timestamp"] == pytest.approx(12 / 50)
    tasks = pq.read_table(lr / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["task 0", "task 1"]
    assert b"pandas" in tasks.schema.metadata  # pandas.read_parquet indexes by task
    stats = json.loads((lr / "meta/stats.json").read_text())
    assert np.array(stats["observation.images.cam_high"]["mean"]).shape == (3, 1, 1)
    assert (lr / "videos/observation.images.cam_high/chunk-000/file-000.mp4").stat().st_size > 0

    back = DatasetReader(import_lerobot(lr, tmp_path / "back", progress=False))
    orig = DatasetReader(src)
    np.testing.assert_array_equal(back.state, orig.state)
    np.testing.assert_array_equal(back.action, orig.action)
    np.testing.assert_array_equal(back.env_state, orig.env_state)
    assert back.meta.state_mask == orig.meta.state_mask
    assert back.meta.action_slots == orig.meta.action_slots
    assert [(e.start, e.length, e.instruction, e.success) for e in back.meta.episodes] == [
        (e.start, e.length, e.instruction, e.success) for e in orig.meta.episodes]
    err = np.abs(back.images["cam_high"].astype(int) - orig.images["cam_high"].astype(int))
    assert err.mean() < 6, err.mean()  # chroma subsampling costs a little even at crf 0


def test_refuses_to_overwrite_and_foreign_widths(tmp_path):
    src = _make_dataset(tmp_path / "ds", n_eps=1, length=4)
    lr = export_lerobot(src, tmp_path / "lr", progress=False)
    with pytest.raises(FileExistsError, match="--force"):
        export_lerobot(src, tmp_path / "lr", progress=False)
    export_lerobot(src, tmp_path / "lr", force=True, progress=False)
    # A foreign 14-dim dataset needs a slot map.
    import pyarrow as pa
    t = pq.read_table(lr / "data/chunk-000/file-000.parquet")
    small = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(4 * 14, np.float32)), 14)
    t = t.set_column(t.column_names.index("observation.state"), "observation.state", small)
    pq.write_table(t, lr / "data/chunk-000/file-000.parquet")
    (lr / "meta/action_diffusion.json").unlink()
    with pytest.raises(LeRobotError, match="--state-slots"):
        import_lerobot(lr, tmp_path / "x", progress=False)
    out = import_lerobot(lr, tmp_path / "x", state_slots=list(range(14)), progress=False)
    assert DatasetReader(out).meta.state_mask[:14] == [True] * 14
    assert not (tmp_path / "nothing").exists()
