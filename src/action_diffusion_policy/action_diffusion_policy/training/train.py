"""Train an action-chunk policy from a YAML config on a dataset directory.

Usage::

    train --config cfg.yaml --dataset DATASET_DIR --output RUN_DIR [--resume] [--device auto]
    torchrun --nproc_per_node 4 -m action_diffusion_policy.training.train --config ...  # multi-GPU

The YAML has two sections, ``policy`` (fields of ``PolicyConfig``) and ``train`` (fields of
``TrainConfig``). Fields the dataset defines (camera_names, image_size, state_slots,
action_slots, env_state_dim, control_frequency, embodiments) default to the dataset's values.

RUN_DIR holds ``config.yaml`` (resolved), ``log.csv`` (step, lr, losses, throughput),
``checkpoints/step_XXXXXXX/`` and ``checkpoints/last/`` (EMA weights, loadable with
``load_policy``) and ``train_state/`` (raw weights, EMA, optimizer, step, RNG; for ``--resume``).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from action_diffusion_policy.checkpoint import save_checkpoint, state_dict_for_save
from action_diffusion_policy.config import ConfigError, PolicyConfig
from action_diffusion_policy.data.dataset import ChunkDataset, split_episodes
from action_diffusion_policy.data.format import DatasetReader
from action_diffusion_policy.hardware import (
    PRECISIONS,
    autocast,
    cpu_has_native_bf16,
    resolve_precision,
)
from action_diffusion_policy.policy import ActionChunkPolicy
from unified_action_space.layout import GROUPS

LOG_FIELDS = ["step", "epoch", "lr", "train_loss", "val_loss", "samples_per_s", "elapsed_s"]


@dataclass
class TrainConfig:
    """Optimisation settings (the ``train`` section of the YAML)."""

    steps: int = 5000  # optimiser steps in total
    batch_size: int = 64  # per process
    lr: float = 1e-4  # peak learning rate (AdamW)
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 500  # linear warm-up, then cosine decay to 0
    grad_clip: float = 1.0  # max global grad norm (0: off)
    ema_decay: float = 0.999  # EMA of weights used for checkpoints; warmed up from 0
    val_fraction: float = 0.1  # fraction of episodes held out for validation
    val_every: int = 500  # steps between validation losses
    val_batches: int = 8  # batches per validation
    checkpoint_every: int = 1000  # steps between checkpoints (and train_state for resume)
    log_every: int = 50  # steps between log.csv rows
    seed: int = 0
    num_workers: int = 0  # DataLoader workers
    # 'auto': bf16 autocast where the device has native bf16 (hardware.py), else fp32
    precision: str = "auto"

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        for name in ("steps", "batch_size", "val_every", "checkpoint_every", "log_every",
                     "val_batches"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)!r} is not allowed; "
                                  "expected >= 1")
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr!r} is not allowed; expected > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay={self.ema_decay!r}; expected in [0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"train.val_fraction={self.val_fraction!r}; expected in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision={self.precision!r} is not allowed; expected "
                              f"one of {PRECISIONS}")
        if self.warmup_steps < 0 or self.num_workers < 0 or self.grad_clip < 0:
            raise ConfigError("train.warmup_steps, num_workers and grad_clip must be >= 0")


def _read_recipe(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """One YAML recipe with its ``base:`` recipes merged under it (section by section)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: 'base' chain loops back to itself "
                          f"({' -> '.join(p.name for p in (*chain, path))})")
    if not path.is_file():
        where = f" (the 'base' of {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: no such recipe{where}")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'policy' and 'train' sections")
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _read_recipe(path.parent / base, (*chain, path))
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def load_config(path_or_dict: str | os.PathLike | dict) -> tuple[dict, TrainConfig]:
    """YAML file or dict -> (policy section dict, TrainConfig).

    A file may name ``base: other.yaml`` (relative to itself): its sections are the base's with
    this file's keys on top, so a variant recipe states only what differs.
    """
    if isinstance(path_or_dict, dict):
        raw, where = path_or_dict, "config"
    else:
        where = str(path_or_dict)
        raw = _read_recipe(Path(path_or_dict))
    unknown = sorted(set(raw) - {"policy", "train"})
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {unknown}; allowed: "
                          "base, policy, train")
    train_raw = raw.get("train") or {}
    known = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(train_raw) - known)
    if bad:
        raise ConfigError(f"{where}: unknown train keys {bad}; allowed: {sorted(known)}")
    return dict(raw.get("policy") or {}), TrainConfig(**train_raw)


def policy_config_for_dataset(policy_raw: dict, reader: DatasetReader) -> PolicyConfig:
    """Fill the dataset-defined fields of the policy config from the dataset's meta."""
    meta = reader.meta
    d = dict(policy_raw)
    d.setdefault("camera_names", list(meta.camera_names))
    d.setdefault("image_size", list(meta.image_size) if meta.image_size else None)
    recorded = np.flatnonzero(np.asarray(meta.state_mask)).tolist()
    selection = d.get("state_slots", STATE_SELECTIONS[0])
    if isinstance(selection, str):
        if selection not in STATE_SELECTIONS:
            raise ConfigError(f"policy.state_slots={selection!r} is not allowed; expected a "
                              f"list of slot indices or one of {STATE_SELECTIONS}")
        d["state_slots"] = (recorded if selection == "all"
                            else [s for s in recorded if s in JOINT_POSITION_SLOTS])
    d.setdefault("action_slots", list(meta.action_slots))
    d.setdefault("env_state_dim", meta.env_state_dim)
    d.setdefault("control_frequency", meta.control_frequency)
    d.setdefault("embodiments", [meta.embodiment])
    cfg = PolicyConfig.from_json(d)
    missing = sorted(set(cfg.camera_names) - set(meta.camera_names))
    if missing:
        raise ConfigError(f"policy.camera_names {missing} are not in the dataset "
                          f"{reader.path} (cameras {meta.camera_names})")
    if cfg.image_size and meta.image_size and tuple(cfg.image_size) != tuple(meta.image_size):
        raise ConfigError(f"policy.image_size {cfg.image_size} differs from the dataset's "
                          f"{meta.image_size}")
    if cfg.env_state_dim not in (0, meta.env_state_dim):
        raise ConfigError(f"policy.env_state_dim={cfg.env_state_dim}, the dataset has "
                          f"{meta.env_state_dim}")
    return cfg


# Shorthands for policy.state_slots: every recorded slot, or the joint and gripper positions
# only (no velocities, no EEF pose), the camera recipes' input: velocities let a policy
# continue the motion it sees in its own state instead of looking where the object is.
STATE_SELECTIONS = ("all", "joint_positions")


# The layout's own joint-position groups (arm joints and gripper joints, opening included).
JOINT_POSITION_SLOTS = frozenset(
    s for name, slots in GROUPS.items() if name.endswith("_joint_pos") for s in slots)


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        if pm.requires_grad:
            pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def _cycle(loader, sampler):
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for batch in loader:
            yield epoch, batch
        epoch += 1


def _save_train_state(run: Path, model, ema, optimizer, step: int) -> None:
    tmp = run / f"train_state.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(state_dict_for_save(model), str(tmp / "model.safetensors"))
    save_file(state_dict_for_save(ema), str(tmp / "ema.safetensors"))
    opt = optimizer.state_dict()
    tensors = {f"{i}.{k}": v.detach().cpu().contiguous().clone()
               for i, st in opt["state"].items() for k, v in st.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    with open(tmp / "state.json", "w") as f:
        json.dump({"step": step, "param_groups": opt["param_groups"]}, f)
    final = run / "train_state"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _load_train_state(run: Path, model, ema, optimizer) -> int:
    src = run / "train_state"
    model.load_state_dict(load_file(str(src / "model.safetensors")))
    ema.load_state_dict(load_file(str(src / "ema.safetensors")))
    tensors = load_file(str(src / "optimizer.safetensors"))
    with open(src / "state.json") as f:
        meta = json.load(f)
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("rng."):
            continue
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"])


def run_training(config: str | os.PathLike | dict, dataset: str | os.PathLike,
                 output: str | os.PathLike, resume: bool = False, device: str = "auto",
                 progress: bool = True, steps: int | None = None) -> Path:
    """Train; returns the directory of the last EMA checkpoint (``output/checkpoints/last``).

    ``steps`` overrides ``train.steps`` (the same recipe on a smaller budget, e.g. on a CPU).
    """
    policy_raw, tcfg = load_config(config)
    if steps is not None:
        tcfg = replace(tcfg, steps=steps)
    run = Path(output)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r} is not allowed; expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but torch sees no CUDA device; use --device cpu")
    if world > 1:
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
    dev = torch.device(f"cuda:{local_rank}" if device == "cuda" else "cpu")
    if device == "cuda":
        torch.cuda.set_device(dev)

    if (run / "train_state").exists() and not resume:
        raise FileExistsError(f"{run} already holds a training run; pass --resume to continue "
                              "it or choose another --output")
    if resume and not (run / "train_state").exists():
        raise FileNotFoundError(f"--resume: {run / 'train_state'} does not exist; "
                                "start without --resume")
    torch.manual_seed(tcfg.seed + rank)
    np.random.seed(tcfg.seed + rank)

    reader = DatasetReader(dataset)
    pcfg = policy_config_for_dataset(policy_raw, reader)
    train_eps, val_eps = split_episodes(reader.num_episodes, tcfg.val_fraction, tcfg.seed)
    train_ds = ChunkDataset(reader, pcfg.n_obs_steps, pcfg.horizon, pcfg.camera_names, train_eps)
    val_ds = (ChunkDataset(reader, pcfg.n_obs_steps, pcfg.horizon, pcfg.camera_names, val_eps)
              if val_eps else None)
    sampler = None
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(train_ds, world, rank, shuffle=True,
                                                      seed=tcfg.seed)
    gen = torch.Generator().manual_seed(tcfg.seed)
    loader = DataLoader(train_ds, batch_size=tcfg.batch_size, shuffle=sampler is None,
                        sampler=sampler, drop_last=len(train_ds) >= tcfg.batch_size,
                        num_workers=tcfg.num_workers, generator=gen,
                        pin_memory=device == "cuda", persistent_workers=tcfg.num_workers > 0)

    policy = ActionChunkPolicy(pcfg, reader.meta.stats).to(dev)
    ema = copy.deepcopy(policy).requires_grad_(False).eval()
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tcfg.lr, betas=tcfg.betas,
                                  weight_decay=tcfg.weight_decay)
    step = 0
    if resume:
        step = _load_train_state(run, policy, ema, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(tcfg.warmup_steps, tcfg.steps), last_epoch=step - 1)
    model = policy
    if world > 1:
        # With a language input, batches without it leave the language layers unused.
        model = torch.nn.parallel.DistributedDataParallel(
            policy, device_ids=[local_rank] if device == "cuda" else None,
            find_unused_parameters=pcfg.lang_dim > 0)

    precision = resolve_precision(tcfg.precision, dev)
    main_proc = rank == 0
    if main_proc:
        print(f"[train] device {dev}, precision {precision} (train.precision="
              f"{tcfg.precision}; native CPU bf16: {cpu_has_native_bf16()}), "
              f"{torch.get_num_threads()} threads", flush=True)
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "config.yaml", "w") as f:
            yaml.safe_dump({"policy": pcfg.to_json(), "train": asdict(tcfg)}, f, sort_keys=False)
        new_log = not (run / "log.csv").exists()
        log_f = open(run / "log.csv", "a", newline="")  # noqa: SIM115 - closed below
        log = csv.DictWriter(log_f, LOG_FIELDS)
        if new_log:
            log.writeheader()

    def validate() -> float:
        if val_ds is None:
            return float("nan")
        vloader = DataLoader(val_ds, batch_size=tcfg.batch_size, shuffle=True,
                             generator=torch.Generator().manual_seed(tcfg.seed))
        losses = []
        with torch.random.fork_rng(devices=[dev] if device == "cuda" else []), torch.no_grad():
            torch.manual_seed(tcfg.seed)  # same noise every time: comparable numbers
            for i, batch in enumerate(vloader):
                if i >= tcfg.val_batches:
                    break
                losses.append(float(ema.compute_loss(batch)))
        return float(np.mean(losses))

    def checkpoint(step: int, val_loss: float) -> None:
        extra = {"step": step, "val_loss": val_loss, "dataset": str(reader.path)}
        save_checkpoint(ema, run / "checkpoints" / f"step_{step:07d}", extra)
        save_checkpoint(ema, run / "checkpoints" / "last", extra)
        _save_train_state(run, policy, ema, optimizer, step)

    bar = tqdm(total=tcfg.steps, initial=step, desc="train", disable=not (main_proc and progress),
               dynamic_ncols=True)
    policy.train()
    t0, t_last, n_last, loss_sum, loss_n = time.time(), time.time(), 0, 0.0, 0
    val_loss = float("nan")
    batches = _cycle(loader, sampler)
    while step < tcfg.steps:
        epoch, batch = next(batches)
        with autocast(precision, dev):
            loss = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        ema_update(ema, policy, min(tcfg.ema_decay, (1 + step) / (10 + step)))
        loss_sum += float(loss.detach())
        loss_n += 1
        n_last += len(batch["action"]) * world
        bar.update(1)
        if not main_proc:
            continue
        if step % tcfg.val_every == 0 or step == tcfg.steps:
            val_loss = validate()
        if step % tcfg.log_every == 0 or step == tcfg.steps:
            now = time.time()
            row = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                   "train_loss": loss_sum / loss_n, "val_loss": val_loss,
                   "samples_per_s": n_last / max(now - t_last, 1e-9), "elapsed_s": now - t0}
            log.writerow(row)
            log_f.flush()
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{val_loss:.4f}")
            t_last, n_last, loss_sum, loss_n = now, 0, 0.0, 0
        if step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
            checkpoint(step, val_loss)
    bar.close()
    if main_proc:
        log_f.close()
        if not (run / "checkpoints" / "last").exists():  # resumed at the end already
            checkpoint(step, val_loss)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return run / "checkpoints" / "last"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Train a diffusion / flow-matching action-chunk policy. Multi-GPU: launch "
                    "with torchrun (DistributedDataParallel when WORLD_SIZE > 1).")
    p.add_argument("--config", required=True, help="YAML with 'policy' and 'train' sections")
    p.add_argument("--dataset", required=True, help="dataset directory (data/format.py)")
    p.add_argument("--output", required=True, help="run directory (checkpoints, logs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--steps", type=int, default=None,
                   help="optimiser steps, overriding train.steps (a smaller budget on a CPU)")
    a = p.parse_args(argv)
    last = run_training(a.config, a.dataset, a.output, a.resume, a.device, not a.no_progress,
                        steps=a.steps)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"last checkpoint: {last}")


if __name__ == "__main__":
    main()
