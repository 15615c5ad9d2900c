"""Plot the policy's predicted chunks against the commands the executor actually sent.

Each chunk is drawn as a thin line starting at its observation stamp (action i at
stamp + i * step_period); the executed command is the thick line. Where the chunks fan out the
policy is unsure; where the thick line departs from the newest chunks the executor is
ensembling or holding. One panel per joint of one arm, plus the gripper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ChunkRecord:
    stamp: float  # s, observation time the chunk was conditioned on
    step_period: float  # s between actions
    slots: np.ndarray  # (k,) unified slot indices
    actions: np.ndarray  # (H, k)


def plot_chunks_vs_commands(
    chunks: list[ChunkRecord],
    command_times: np.ndarray,
    commands: np.ndarray,
    slots: list[int],
    slot_names: list[str],
    path: Path,
    title: str = "",
    max_chunks: int = 200,
) -> Path:
    """Write a PNG; ``commands`` is (N, len(slots)) in the same unified units as the chunks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    command_times = np.asarray(command_times, dtype=float)
    commands = np.asarray(commands, dtype=float)
    if commands.ndim != 2 or commands.shape[1] != len(slots):
        raise ValueError(
            f"commands must be (N, {len(slots)}) for slots {slots}, got {commands.shape}"
        )
    starts = list(command_times[:1]) + [c.stamp for c in chunks[:1]]
    if not starts:
        raise ValueError("nothing to plot: no chunks and no commands")
    t0 = min(starts)
    n = len(slots)
    cols = 2 if n > 3 else 1
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 2.2 * rows), squeeze=False)
    step = max(1, len(chunks) // max_chunks)
    cmap = plt.get_cmap("viridis")
    for j, (slot, name) in enumerate(zip(slots, slot_names)):
        ax = axes[j // cols][j % cols]
        for i, chunk in enumerate(chunks[::step]):
            col = np.flatnonzero(chunk.slots == slot)
            if col.size == 0:
                continue
            t = chunk.stamp - t0 + chunk.step_period * np.arange(len(chunk.actions))
            colour = cmap(i / max(1, len(chunks) // step))
            ax.plot(t, chunk.actions[:, col[0]], lw=0.6, alpha=0.5, color=colour)
        if command_times.size:
            ax.plot(command_times - t0, commands[:, j], color="crimson", lw=1.8, label="executed")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=8)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(loc="best", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time since start (s)", fontsize=8)
    fig.suptitle(title or "predicted chunks (thin, colour = time) vs executed commands (red)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    os.replace(partial, path)
    return path
