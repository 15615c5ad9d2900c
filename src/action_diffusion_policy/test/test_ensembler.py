"""ChunkEnsembler: alignment, latency compensation, both strategies, rejection. Expected values
are worked out by hand in the comments."""

import math

import numpy as np
import pytest

from action_diffusion_policy.runtime.ensembler import ChunkEnsembler, EnsemblerConfig

SLOTS = [0, 10]


def ramp(base: float, horizon: int = 10) -> np.ndarray:
    """Row i = [base + i, -(base + i)]."""
    col = base + np.arange(horizon, dtype=np.float64)
    return np.stack([col, -col], axis=1)


def test_three_overlapping_chunks_exact_weighted_mean():
    ens = ChunkEnsembler(SLOTS, EnsemblerConfig(ensembling_k=0.5))
    # Arrival order differs from stamp order on purpose: weights follow stamps.
    assert ens.add_chunk(0.3, 0.1, SLOTS, ramp(1000)) == "accepted"
    assert ens.add_chunk(0.0, 0.1, SLOTS, ramp(10)) == "accepted"
    assert ens.add_chunk(0.2, 0.1, SLOTS, ramp(100)) == "accepted"
    action, info = ens.action_at(0.35)
    # rows: oldest (stamp 0.0) floor(3.5)=3 -> 13; stamp 0.2 floor(1.5)=1 -> 101;
    # newest (0.3) floor(0.5)=0 -> 1000. Weights exp(-0.5 i), i = 0 oldest.
    w = np.array([1.0, math.exp(-0.5), math.exp(-1.0)])
    expected = (13 * w[0] + 101 * w[1] + 1000 * w[2]) / w.sum()
    assert expected == pytest.approx(223.93, abs=0.01)  # (13 + 61.26 + 367.88) / 1.9744
    np.testing.assert_allclose(action, [expected, -expected], rtol=1e-12)
    assert info.indices == [3, 1, 0]
    assert info.stamps == [0.0, 0.2, 0.3]
    np.testing.assert_allclose(info.weights, w / w.sum())
    assert info.n_covering == 3 and info.reason == ""


def test_negative_k_prefers_the_newest_chunk():
    ens = ChunkEnsembler(SLOTS, EnsemblerConfig(ensembling_k=-math.log(3.0)))
    ens.add_chunk(0.0, 0.1, SLOTS, ramp(10))
    ens.add_chunk(0.1, 0.1, SLOTS, ramp(100))
    action, info = ens.action_at(0.1)
    # rows 1 (oldest) -> 11 and 0 (newest) -> 100; weights 1 and 3 (exp(+ln 3 * 1)) over 4.
    np.testing.assert_allclose(info.weights, [0.25, 0.75])
    np.testing.assert_allclose(action, [(11 + 3 * 100) / 4, -(11 + 3 * 100) / 4])


def test_default_k_matches_act():
    ens = ChunkEnsembler(SLOTS)
    assert ens.config.ensembling_k == 0.01
    ens.add_chunk(0.0, 0.1, SLOTS, ramp(0))
    ens.add_chunk(0.1, 0.1, SLOTS, ramp(50))
    action, _ = ens.action_at(0.1)
    # rows 1 (value 1) and 0 (value 50), weights 1 and e^-0.01
    expected = (1 + 50 * math.exp(-0.01)) / (1 + math.exp(-0.01))
    assert action[0] == pytest.approx(expected, rel=1e-12)


def test_late_chunk_skips_passed_actions():
    ens = ChunkEnsembler(SLOTS)
    ens.add_chunk(1.0, 0.02, SLOTS, ramp(0, horizon=64))
    # the policy took 47 ms: (1.047 - 1.0) / 0.02 = 2.35 -> row 2
    action, info = ens.action_at(1.047)
    assert info.indices == [2] and action[0] == 2.0
    # 0.06 / 0.02 is 2.9999999999999996 in floats; eps makes it row 3
    action, info = ens.action_at(1.06)
    assert info.indices == [3] and action[0] == 3.0


def test_future_chunk_does_not_cover_and_expired_chunk_is_dropped():
    ens = ChunkEnsembler(SLOTS)
    ens.add_chunk(2.0, 0.1, SLOTS, ramp(0, horizon=5))
    action, info = ens.action_at(1.9)
    assert action is None and info.reason == "not_covered" and info.n_chunks == 1
    action, _ = ens.action_at(2.45)  # row 4, the last
    assert action[0] == 4.0
    action, info = ens.action_at(2.5)  # row 5 == horizon: nothing left
    assert action is None and info.reason == "no_chunks"
    assert ens.counters["dropped_expired"] == 1 and ens.n_chunks == 0


def test_receding_horizon_switches_after_n_steps():
    ens = ChunkEnsembler(SLOTS, EnsemblerConfig(strategy="receding_horizon", receding_steps=3))
    ens.add_chunk(0.0, 0.1, SLOTS, ramp(0))
    assert ens.action_at(0.0)[0][0] == 0.0  # A[0]
    ens.add_chunk(0.1, 0.1, SLOTS, ramp(100))  # B arrives; A has executed 1 step
    assert ens.action_at(0.1)[0][0] == 1.0  # A[1]
    assert ens.action_at(0.2)[0][0] == 2.0  # A[2]: 3 steps of A executed
    action, info = ens.action_at(0.3)  # switch to B, row floor(0.2 / 0.1) = 2
    assert action[0] == 102.0 and info.stamps == [0.1] and info.indices == [2]
    ens.add_chunk(0.35, 0.1, SLOTS, ramp(500))
    assert ens.action_at(0.4)[0][0] == 103.0  # B executed 2 steps only: stay
    assert ens.action_at(0.5)[0][0] == 104.0
    assert ens.action_at(0.6)[0][0] == 502.0  # floor(0.25 / 0.1 + eps) = 2


def test_receding_horizon_falls_back_when_current_expires():
    ens = ChunkEnsembler(SLOTS, EnsemblerConfig(strategy="receding_horizon", receding_steps=50))
    ens.add_chunk(0.0, 0.1, SLOTS, ramp(0, horizon=3))
    ens.add_chunk(0.05, 0.1, SLOTS, ramp(100, horizon=10))
    assert ens.action_at(0.05)[0][0] == 100.0  # newest first
    ens.clear()
    ens.add_chunk(0.0, 0.1, SLOTS, ramp(0, horizon=3))
    assert ens.action_at(0.0)[0][0] == 0.0
    ens.add_chunk(0.05, 0.1, SLOTS, ramp(100, horizon=10))
    assert ens.action_at(0.25)[0][0] == 2.0  # still A (n = 50 not reached)
    assert ens.action_at(0.3)[0][0] == 102.0  # A expired: B, row floor(2.5) = 2


def test_rejections_are_counted_and_never_executed():
    ens = ChunkEnsembler(SLOTS)
    bad = ramp(0)
    bad[3, 1] = np.nan
    assert ens.add_chunk(0.0, 0.1, SLOTS, bad) == "rejected_nonfinite"
    inf = ramp(0)
    inf[0, 0] = np.inf
    assert ens.add_chunk(0.0, 0.1, SLOTS, inf) == "rejected_nonfinite"
    assert ens.add_chunk(0.0, 0.1, [0, 11], ramp(0)) == "rejected_slots"
    assert ens.add_chunk(0.0, 0.0, SLOTS, ramp(0)) == "rejected_malformed"
    assert ens.add_chunk(0.0, 0.1, SLOTS, ramp(0)[:, :1]) == "rejected_malformed"
    assert ens.n_chunks == 0 and ens.action_at(0.0)[0] is None
    assert ens.counters["rejected_nonfinite"] == 2
    assert ens.counters["rejected_slots"] == 1
    assert ens.counters["rejected_malformed"] == 2


def test_superset_of_slots_selects_columns_and_ignores_nonfinite_extras():
    ens = ChunkEnsembler(SLOTS)
    # columns for slots 0, 5, 10, 50; slot 50 holds NaN but is not commanded
    actions = np.array([[1.0, 7.0, 2.0, np.nan]])
    assert ens.add_chunk(0.0, 0.1, [0, 5, 10, 50], actions) == "accepted"
    np.testing.assert_array_equal(ens.action_at(0.0)[0], [1.0, 2.0])


def test_capacity_evicts_oldest_and_same_stamp_replaces():
    ens = ChunkEnsembler(SLOTS, EnsemblerConfig(max_chunks=2))
    ens.add_chunk(0.0, 0.1, SLOTS, ramp(0))
    ens.add_chunk(0.1, 0.1, SLOTS, ramp(100))
    ens.add_chunk(0.2, 0.1, SLOTS, ramp(200))
    assert ens.counters["evicted"] == 1
    _, info = ens.action_at(0.2)
    assert info.stamps == [0.1, 0.2]
    ens.add_chunk(0.2, 0.1, SLOTS, ramp(300))
    assert ens.counters["replaced"] == 1
    _, info = ens.action_at(0.2)
    assert info.stamps == [0.1, 0.2]


def test_longer_horizon_grows_storage():
    ens = ChunkEnsembler(SLOTS, horizon=4)
    ens.add_chunk(0.0, 0.1, SLOTS, ramp(0, horizon=4))
    ens.add_chunk(0.0001, 0.1, SLOTS, ramp(0, horizon=100))
    action, info = ens.action_at(9.0)
    assert action[0] == 89.0 and info.n_covering == 1  # floor(8.9999 / 0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "ensemble"},
        {"ensembling_k": float("nan")},
        {"receding_steps": 0},
        {"max_chunks": 0},
    ],
)
def test_config_errors_name_the_field(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        EnsemblerConfig(**kwargs)
