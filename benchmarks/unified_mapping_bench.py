"""Unified-space mapping cost per call, for every shipped embodiment.

    python benchmarks/unified_mapping_bench.py [--number 2000] [--repeat 7] [--embodiments ...]

Measures, in microseconds per call (median over repeats of `number` calls, single thread):
  state_us          one joint state per arm (as rclpy hands it: list of names, array('d')
                    positions and velocities, one extra unknown joint) -> (values[128], mask),
                    FK off. Target < 50 us.
  state_fk_us       the same with FK filling the EEF slots (only embodiments with a model).
  fk_us             state_fk_us - state_us: the cost of FK alone.
  chunk_full_us     one 64-step (64, 128) float32 chunk -> per-arm commands. Target < 200 us.
  chunk_k_us        a (64, k) chunk in action_slots order.
  chunk_slots_us    a (64, k) chunk with explicit slot_indices in shuffled order.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import platform
import statistics
import timeit

import numpy as np

from unified_action_space import list_embodiments, load_embodiment

STATE_TARGET_US = 50.0
CHUNK_TARGET_US = 200.0
HORIZON = 64


def per_call_us(fn, number: int, repeat: int) -> float:
    fn()  # warm caches (name index, slot look-up tables)
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e6


def joint_states(emb, rng):
    states = {}
    for arm in emb.arms:
        lim = np.array([j.position_limits for j in arm.joints])
        q = rng.uniform(lim[:, 0], lim[:, 1])
        names = [*arm.joint_names, "unlisted_joint"]
        order = rng.permutation(len(names))  # drivers do not publish in config order
        pos = np.r_[q, 0.0][order]
        vel = rng.normal(size=len(names))
        states[arm.name] = ([names[i] for i in order], array.array("d", pos),
                            array.array("d", vel))  # fmt: skip
    return states


def bench(name: str, number: int, repeat: int) -> dict:
    rng = np.random.default_rng(0)
    emb = load_embodiment(name)
    states = joint_states(emb, rng)
    out = {"state_us": per_call_us(lambda: emb.state_from_joint_states(states, fk=False),
                                   number, repeat)}  # fmt: skip
    if emb.has_kinematics:
        out["state_fk_us"] = per_call_us(lambda: emb.state_from_joint_states(states), number,
                                         repeat)  # fmt: skip
        out["fk_us"] = out["state_fk_us"] - out["state_us"]
    full = rng.uniform(-1, 1, size=(HORIZON, 128)).astype(np.float32)
    k_cols = full[:, emb.action_slots]
    slots = rng.permutation(emb.action_slots)
    shuffled = full[:, slots]
    out["chunk_full_us"] = per_call_us(lambda: emb.commands_from_actions(full), number, repeat)
    out["chunk_k_us"] = per_call_us(lambda: emb.commands_from_actions(k_cols), number, repeat)
    out["chunk_slots_us"] = per_call_us(
        lambda: emb.commands_from_actions(shuffled, slot_indices=slots), number, repeat
    )
    out = {k: round(v, 2) for k, v in out.items()}
    out["state_ok"] = out["state_us"] < STATE_TARGET_US
    out["chunk_ok"] = max(out["chunk_full_us"], out["chunk_k_us"],
                          out["chunk_slots_us"]) < CHUNK_TARGET_US  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--embodiments", nargs="*", default=None)
    args = parser.parse_args()
    names = args.embodiments or list_embodiments()
    results = {name: bench(name, args.number, args.repeat) for name in names}
    print(json.dumps({
        "benchmark": "unified_mapping",
        "unit": "us_per_call",
        "horizon": HORIZON,
        "targets_us": {"state": STATE_TARGET_US, "chunk": CHUNK_TARGET_US},
        "all_ok": all(r["state_ok"] and r["chunk_ok"] for r in results.values()),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
