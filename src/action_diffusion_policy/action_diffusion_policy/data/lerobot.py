"""Export to and import from the LeRobotDataset v3 layout, so Hugging Face tools read our data.

    lerobot_convert export DATASET OUT [--crf N] [--repo-id NAME] [--force]
    lerobot_convert import LEROBOT_DIR OUT [--embodiment NAME] [--state-slots I,J,...]
                    [--action-slots I,J,...] [--force]

Layout written (LeRobot ``codebase_version`` v3.0)::

    meta/info.json                          features, fps, paths, totals
    meta/stats.json                         per-feature mean/std/min/max/count
    meta/tasks.parquet                      task string (pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet  one row per episode: length, tasks, data and
                                            video locations, frame ranges
    data/chunk-000/file-000.parquet         one row per frame: observation.state, action,
                                            [observation.environment_state], timestamp,
                                            frame_index, episode_index, index, task_index
    videos/observation.images.<cam>/chunk-000/file-000.mp4   H.264 yuv420p, all episodes
                                            back to back
    meta/action_diffusion.json              what LeRobot has no field for: state_mask,
                                            action_slots, action_source, embodiment, episode
                                            success flags (our importer reads it back)

State and action columns are the 128 unified slots. Importing a dataset of someone else's
(e.g. a 14-dim ALOHA one) needs ``--state-slots``/``--action-slots``: the unified slot of each
column. Images go through lossy video: state and action round-trip exactly, frames approximately
(``--crf 0`` for near-lossless).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from action_diffusion_policy.data.format import (
    NUM_SLOTS,
    DatasetError,
    DatasetMeta,
    DatasetReader,
    DatasetWriter,
)

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
EXTRA_FILE = "meta/action_diffusion.json"
IMAGE_KEY = "observation.images."


class LeRobotError(ValueError):
    """A LeRobot dataset directory is missing something or holds what we cannot map."""


def _slot_names() -> list[str]:
    try:
        from unified_action_space.layout import SLOT_NAMES

        return list(SLOT_NAMES)
    except Exception:  # the names are documentation only
        return [f"slot_{i}" for i in range(NUM_SLOTS)]


def _fixed_list(arr: np.ndarray) -> pa.Array:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "count": [len(x)],
    }


def _image_stats(frames: np.ndarray, max_frames: int = 500) -> dict:
    """Per-channel stats in [0, 1], shaped (3, 1, 1) as LeRobot stores them."""
    idx = np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).astype(int)
    x = np.asarray(frames[idx], dtype=np.float64) / 255.0
    flat = x.reshape(-1, 3)

    def c(v):
        return np.asarray(v).reshape(3, 1, 1).tolist()

    return {"mean": c(flat.mean(0)), "std": c(flat.std(0)), "min": c(flat.min(0)),
            "max": c(flat.max(0)), "count": [len(frames)]}


def _pandas_index_metadata(index_col: str, columns: list[tuple[str, str, str]]) -> bytes:
    """Schema metadata that makes ``pandas.read_parquet`` use ``index_col`` as the index."""
    return json.dumps({
        "index_columns": [index_col],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": n, "field_name": n, "pandas_type": p, "numpy_type": t,
                     "metadata": None} for n, p, t in columns],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }).encode()


def _encode_video(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    import imageio_ffmpeg

    _n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise LeRobotError(f"H.264 yuv420p needs even image sizes, got {h}x{w}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p", quality=None, macro_block_size=1,
        output_params=["-crf", str(crf), "-g", "2", "-preset", "veryfast"],
    )
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()


def _decode_video(path: Path, h: int, w: int) -> np.ndarray:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    vw, vh = meta["size"]
    if (vh, vw) != (h, w):
        raise LeRobotError(f"{path}: video is {vh}x{vw}, info.json says {h}x{w}")
    frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)


def _prepare_out(out: Path, force: bool) -> Path:
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _finish(tmp: Path, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------------------------
# Export


def export_lerobot(dataset: str | os.PathLike, out: str | os.PathLike, crf: int = 18,
                   repo_id: str = "", force: bool = False, progress: bool = True) -> Path:
    """Write ``dataset`` (our format) as a LeRobotDataset v3 directory ``out``."""
    ds = DatasetReader(dataset)
    meta = ds.meta
    out = Path(out)
    tmp = _prepare_out(out, force)
    try:
        fps = float(meta.control_frequency)
        n = ds.num_frames
        tasks = []
        for e in meta.episodes:
            t = e.instruction or e.task or "demonstration"
            if t not in tasks:
                tasks.append(t)
        ep_index = np.zeros(n, np.int64)
        frame_index = np.zeros(n, np.int64)
        task_index = np.zeros(n, np.int64)
        for i, e in enumerate(meta.episodes):
            s = slice(e.start, e.start + e.length)
            ep_index[s] = i
            frame_index[s] = np.arange(e.length)
            task_index[s] = tasks.index(e.instruction or e.task or "demonstration")
        cols = {
            "observation.state": _fixed_list(ds.state),
            "action": _fixed_list(ds.action),
        }
        if ds.env_state is not None:
            cols["observation.environment_state"] = _fixed_list(ds.env_state)
        cols.update({
            "timestamp": pa.array((frame_index / fps).astype(np.float32)),
            "frame_index": pa.array(frame_index),
            "episode_index": pa.array(ep_index),
            "index": pa.array(np.arange(n, dtype=np.int64)),
            "task_index": pa.array(task_index),
        })
        data_file = tmp / DATA_PATH.format(chunk_index=0, file_index=0)
        data_file.parent.mkdir(parents=True)
        pq.write_table(pa.table(cols), data_file)

        names = _slot_names()
        features = {
            "observation.state": {"dtype": "float32", "shape": [NUM_SLOTS], "names": names},
            "action": {"dtype": "float32", "shape": [NUM_SLOTS], "names": names},
        }
        if ds.env_state is not None:
            features["observation.environment_state"] = {
                "dtype": "float32", "shape": [meta.env_state_dim], "names": None}
        stats = {"observation.state": _stats(ds.state), "action": _stats(ds.action)}
        if ds.env_state is not None:
            stats["observation.environment_state"] = _stats(ds.env_state)
        for cam in tqdm(meta.camera_names, desc="videos", disable=not progress):
            key = IMAGE_KEY + cam
            h, w = meta.image_size
            _encode_video(tmp / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0),
                          ds.images[cam], fps, crf)
            features[key] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": "h264",
                         "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                         "video.fps": fps, "video.channels": 3, "has_audio": False},
            }
            stats[key] = _image_stats(ds.images[cam])
        for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            features[k] = {"dtype": "float32" if k == "timestamp" else "int64",
                           "shape": [1], "names": None}
            stats[k] = _stats(np.asarray(cols[k]).reshape(-1, 1))

        (tmp / "meta").mkdir(exist_ok=True)
        ep_rows = {
            "episode_index": pa.array(np.arange(len(meta.episodes), dtype=np.int64)),
            "tasks": pa.array([[e.instruction or e.task or "demonstration"]
                               for e in meta.episodes], pa.list_(pa.string())),
            "length": pa.array([e.length for e in meta.episodes], pa.int64()),
            "data/chunk_index": pa.array([0] * len(meta.episodes), pa.int64()),
            "data/file_index": pa.array([0] * len(meta.episodes), pa.int64()),
            "dataset_from_index": pa.array([e.start for e in meta.episodes], pa.int64()),
            "dataset_to_index": pa.array([e.start + e.length for e in meta.episodes], pa.int64()),
            "meta/episodes/chunk_index": pa.array([0] * len(meta.episodes), pa.int64()),
            "meta/episodes/file_index": pa.array([0] * len(meta.episodes), pa.int64()),
        }
        for cam in meta.camera_names:
            key = IMAGE_KEY + cam
            ep_rows[f"videos/{key}/chunk_index"] = pa.array([0] * len(meta.episodes), pa.int64())
            ep_rows[f"videos/{key}/file_index"] = pa.array([0] * len(meta.episodes), pa.int64())
            ep_rows[f"videos/{key}/from_timestamp"] = pa.array(
                [e.start / fps for e in meta.episodes], pa.float64())
            ep_rows[f"videos/{key}/to_timestamp"] = pa.array(
                [(e.start + e.length) / fps for e in meta.episodes], pa.float64())
        (tmp / EPISODES_PATH).parent.mkdir(parents=True)
        pq.write_table(pa.table(ep_rows), tmp / EPISODES_PATH)

        task_table = pa.table({"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)),
                               "task": pa.array(tasks, pa.string())})
        task_table = task_table.replace_schema_metadata({b"pandas": _pandas_index_metadata(
            "task", [("task_index", "int64", "int64"), ("task", "unicode", "object")])})
        pq.write_table(task_table, tmp / "meta/tasks.parquet")

        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": meta.embodiment,
            "total_episodes": len(meta.episodes),
            "total_frames": n,
            "total_tasks": len(tasks),
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": fps,
            "splits": {"train": f"0:{len(meta.episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if meta.camera_names else None,
            "features": features,
        }
        if repo_id:
            info["repo_id"] = repo_id
        (tmp / "meta/info.json").write_text(json.dumps(info, indent=4))
        (tmp / "meta/stats.json").write_text(json.dumps(stats, indent=4))
        extra = {
            "embodiment": meta.embodiment, "state_mask": meta.state_mask,
            "action_slots": meta.action_slots, "action_source": meta.action_source,
            "episodes": [{"task": e.task, "instruction": e.instruction, "success": e.success,
                          "source": e.source} for e in meta.episodes],
        }
        (tmp / EXTRA_FILE).write_text(json.dumps(extra, indent=1))
        return _finish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------------
# Import


def _parse_slots(text: str | None, what: str) -> list[int] | None:
    if not text:
        return None
    try:
        slots = [int(s) for s in text.split(",")]
    except ValueError:
        raise LeRobotError(f"--{what}-slots {text!r}: give comma-separated slot indices") from None
    if any(not 0 <= s < NUM_SLOTS for s in slots) or len(set(slots)) != len(slots):
        raise LeRobotError(f"--{what}-slots {text!r}: distinct indices in 0..{NUM_SLOTS - 1}")
    return slots


def _column(table: pa.Table, name: str, src: Path) -> np.ndarray:
    if name not in table.column_names:
        raise LeRobotError(f"{src}: column {name!r} is missing (has {table.column_names})")
    col = table.column(name).combine_chunks()
    if isinstance(col.type, pa.FixedSizeListType | pa.ListType | pa.LargeListType):
        width = len(col[0]) if len(col) else 0
        return np.asarray(col.flatten().to_numpy(zero_copy_only=False),
                          dtype=np.float32).reshape(len(col), width)
    return np.asarray(col.to_numpy(zero_copy_only=False))


def _to_unified(x: np.ndarray, slots: list[int] | None, what: str, src: Path) -> np.ndarray:
    if x.shape[1] == NUM_SLOTS and slots is None:
        return x.astype(np.float32)
    if slots is None:
        raise LeRobotError(
            f"{src}: {what} has {x.shape[1]} columns, not the {NUM_SLOTS} unified slots; pass "
            f"--{what}-slots with the unified slot index of each column"
        )
    if len(slots) != x.shape[1]:
        raise LeRobotError(f"--{what}-slots has {len(slots)} entries, {what} has {x.shape[1]}")
    full = np.zeros((len(x), NUM_SLOTS), np.float32)
    full[:, slots] = x
    return full


def import_lerobot(src: str | os.PathLike, out: str | os.PathLike, embodiment: str = "",
                   state_slots: list[int] | None = None, action_slots: list[int] | None = None,
                   force: bool = False, progress: bool = True) -> Path:
    """Read a LeRobotDataset v3 directory into our dataset format."""
    src = Path(src)
    info_path = src / "meta/info.json"
    if not info_path.is_file():
        raise LeRobotError(f"{src}: no meta/info.json, not a LeRobot dataset")
    info = json.loads(info_path.read_text())
    if not str(info.get("codebase_version", "")).startswith("v3"):
        raise LeRobotError(
            f"{info_path}: codebase_version {info.get('codebase_version')!r}; only v3.x is read"
        )
    extra = json.loads((src / EXTRA_FILE).read_text()) if (src / EXTRA_FILE).is_file() else {}
    files = sorted((src / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise LeRobotError(f"{src}: no data/chunk-*/file-*.parquet")
    table = pa.concat_tables([pq.read_table(f) for f in files])
    table = table.sort_by("index") if "index" in table.column_names else table
    state = _to_unified(_column(table, "observation.state", src), state_slots, "state", src)
    action = _to_unified(_column(table, "action", src), action_slots, "action", src)
    ep = _column(table, "episode_index", src).astype(np.int64)
    env = (_column(table, "observation.environment_state", src)
           if "observation.environment_state" in table.column_names else None)
    features = info.get("features", {})
    cams = [k[len(IMAGE_KEY):] for k, v in features.items()
            if k.startswith(IMAGE_KEY) and v.get("dtype") == "video"]
    sizes = {tuple(features[IMAGE_KEY + c]["shape"][:2]) for c in cams}
    if len(sizes) > 1:
        raise LeRobotError(f"{info_path}: cameras have different sizes {sorted(sizes)}")
    ep_meta = pq.read_table(src / EPISODES_PATH).to_pylist() if (src / EPISODES_PATH).is_file() \
        else []
    tasks_by_ep = {r["episode_index"]: (r.get("tasks") or [""])[0] for r in ep_meta}
    fps = float(info["fps"])
    # Decode every camera's video file(s) and cut per episode by its timestamps.
    videos: dict[str, dict[int, np.ndarray]] = {c: {} for c in cams}
    for cam in tqdm(cams, desc="videos", disable=not progress):
        key = IMAGE_KEY + cam
        h, w = features[key]["shape"][:2]
        cache: dict[Path, np.ndarray] = {}
        for r in ep_meta:
            path = src / info["video_path"].format(
                video_key=key, chunk_index=r[f"videos/{key}/chunk_index"],
                file_index=r[f"videos/{key}/file_index"])
            if path not in cache:
                if not path.is_file():
                    raise LeRobotError(f"{path}: video file is missing")
                cache[path] = _decode_video(path, h, w)
            first = round(r[f"videos/{key}/from_timestamp"] * fps)
            videos[cam][r["episode_index"]] = cache[path][first : first + r["length"]]

    if state_slots is None and extra.get("state_mask"):
        mask = extra["state_mask"]
    else:
        mask = np.zeros(NUM_SLOTS, bool)
        mask[state_slots if state_slots is not None else np.flatnonzero(state.any(0))] = True
        mask = mask.tolist()
    a_slots = extra.get("action_slots") if action_slots is None else sorted(action_slots)
    if a_slots is None:
        a_slots = np.flatnonzero(action.any(0)).tolist()
    meta = DatasetMeta(
        embodiment=embodiment or extra.get("embodiment") or info.get("robot_type") or "unknown",
        control_frequency=fps,
        camera_names=cams,
        image_size=tuple(sizes.pop()) if cams else None,
        state_mask=list(mask),
        action_slots=list(a_slots),
        env_state_dim=0 if env is None else env.shape[1],
        action_source=extra.get("action_source", "command"),
    )
    ep_extra = extra.get("episodes", [])
    with DatasetWriter(out, meta, force=force) as writer:
        for e in np.unique(ep):
            idx = np.flatnonzero(ep == e)
            images = {}
            for cam in cams:
                frames = videos[cam].get(int(e))
                if frames is None or len(frames) != len(idx):
                    got = None if frames is None else len(frames)
                    raise LeRobotError(
                        f"{src}: episode {e} has {len(idx)} frames but video {cam} gives {got}"
                    )
                images[cam] = frames
            info_e = ep_extra[int(e)] if int(e) < len(ep_extra) else {}
            writer.add_episode(
                state[idx], action[idx], images, None if env is None else env[idx],
                task=info_e.get("task", tasks_by_ep.get(int(e), "")),
                instruction=info_e.get("instruction", tasks_by_ep.get(int(e), "")),
                success=bool(info_e.get("success", False)),
                source=info_e.get("source", f"{src.name}/episode_{int(e)}"),
            )
    return Path(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lerobot_convert", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="our dataset -> LeRobotDataset v3")
    ex.add_argument("dataset")
    ex.add_argument("output")
    ex.add_argument("--crf", type=int, default=18, help="H.264 quality (0 = near-lossless)")
    ex.add_argument("--repo-id", default="")
    ex.add_argument("--force", action="store_true")
    im = sub.add_parser("import", help="LeRobotDataset v3 -> our dataset")
    im.add_argument("lerobot_dir")
    im.add_argument("output")
    im.add_argument("--embodiment", default="")
    im.add_argument("--state-slots", help="unified slot of each state column (comma-separated)")
    im.add_argument("--action-slots", help="unified slot of each action column")
    im.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "export":
            path = export_lerobot(a.dataset, a.output, a.crf, a.repo_id, a.force)
        else:
            path = import_lerobot(a.lerobot_dir, a.output, a.embodiment,
                                  _parse_slots(a.state_slots, "state"),
                                  _parse_slots(a.action_slots, "action"), a.force)
    except (LeRobotError, DatasetError, FileExistsError) as exc:
        print(f"lerobot_convert: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
