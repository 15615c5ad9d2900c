"""ObservationBuffer: stamp matching within a tolerance, history, padding, drops."""

import numpy as np
import pytest

from action_diffusion_policy.runtime.observation_buffer import BufferConfig, ObservationBuffer

MASK = np.zeros(128, dtype=bool)
MASK[:3] = True


def state(v: float) -> np.ndarray:
    s = np.zeros(128, dtype=np.float32)
    s[0] = v
    return s


def image(v: int) -> np.ndarray:
    return np.full((4, 6, 3), v, dtype=np.uint8)


def filled(tol: float, n_obs_steps: int = 2) -> ObservationBuffer:
    buf = ObservationBuffer(
        BufferConfig(("a", "b"), n_obs_steps=n_obs_steps, obs_period=0.02, stamp_tolerance=tol)
    )
    now = 1.0
    for t in (0.000, 0.033, 0.066):
        assert buf.add_image("a", t, image(round(t * 1000)), now) == "accepted"
    for t in (0.010, 0.043):
        buf.add_image("b", t, image(round(t * 1000)), now)
    for t in (0.00, 0.02, 0.04, 0.06):
        buf.add_state(t, state(t), MASK, now)
    return buf


def test_matching_within_tolerance_picks_latest_at_or_before_each_step():
    obs, reason = filled(tol=0.03).assemble()
    assert reason == ""
    # t0 = min(0.066, 0.043, 0.06) = 0.043, the time every source has reached.
    # step 0 at 0.043: a 0.033, b 0.043, state 0.04; step 1 at 0.023: a 0.0, b 0.010, state 0.02
    assert obs.stamp == 0.043
    assert obs.source_stamps == {"a": [0.0, 0.033], "b": [0.01, 0.043], "state": [0.02, 0.04]}
    assert obs.images["a"].shape == (2, 4, 6, 3)
    assert obs.images["a"][:, 0, 0, 0].tolist() == [0, 33]
    np.testing.assert_allclose(obs.state[:, 0], [0.02, 0.04])
    assert obs.state.dtype == np.float32 and obs.state_mask.tolist() == MASK.tolist()
    assert obs.env_state is None


def test_out_of_tolerance_gives_no_observation():
    # step 1 at 0.023: a's latest at or before is 0.0, 0.023 s old
    obs, reason = filled(tol=0.02).assemble()
    assert obs is None and reason == "stale_a"


def test_short_history_is_padded_with_oldest():
    buf = ObservationBuffer(BufferConfig(("a",), n_obs_steps=3, obs_period=0.1))
    buf.add_image("a", 5.0, image(1), now_s=5.0)
    buf.add_state(4.98, state(1.0), MASK, now_s=5.0)
    buf.add_state(5.01, state(1.0), MASK, now_s=5.0)
    obs, _ = buf.assemble()
    # t0 = 5.0; steps at 4.9 and 4.8 precede every message: padded with the oldest
    assert obs.source_stamps == {"a": [5.0, 5.0, 5.0], "state": [4.98, 4.98, 4.98]}


def test_gap_inside_history_is_stale():
    buf = ObservationBuffer(
        BufferConfig(("a",), n_obs_steps=2, obs_period=0.1, stamp_tolerance=0.05)
    )
    for t in (1.0, 1.3, 1.31):
        buf.add_image("a", t, image(0), now_s=2.0)
    buf.add_state(1.31, state(0), MASK, now_s=2.0)
    buf.add_state(1.21, state(0), MASK, now_s=2.0)  # out of order: dropped
    obs, reason = buf.assemble()
    # step 1 at 1.21: a's latest at or before is 1.0 (0.21 s old)
    assert obs is None and reason == "stale_a"
    assert buf.counters["out_of_order"] == 1


def test_out_of_order_future_and_unknown_are_counted():
    buf = filled(tol=0.03)
    assert buf.add_image("a", 0.05, image(0), now_s=1.0) == "out_of_order"
    assert buf.add_image("a", 0.066, image(0), now_s=1.0) == "out_of_order"  # duplicate stamp
    assert buf.add_image("a", 1.5, image(0), now_s=1.0) == "future"
    assert buf.add_image("c", 0.5, image(0), now_s=1.0) == "unknown_source"
    assert buf.counters == {"accepted": 9, "out_of_order": 2, "future": 1, "unknown_source": 1}


def test_waiting_until_every_source_has_data_and_env_state():
    buf = ObservationBuffer(
        BufferConfig(("a",), n_obs_steps=1, obs_period=0.02, use_env_state=True)
    )
    buf.add_image("a", 1.0, image(0), now_s=1.0)
    assert buf.assemble() == (None, "waiting_for_state")
    buf.add_state(1.0, state(0), MASK, now_s=1.0)
    assert buf.assemble() == (None, "waiting_for_env_state")
    buf.add_env_state(1.0, np.arange(7.0), now_s=1.0)
    obs, _ = buf.assemble()
    assert obs.env_state.shape == (1, 7) and obs.env_state.dtype == np.float32


def test_decode_is_cached_per_message():
    buf = filled(tol=0.03)
    calls = []

    def decode(payload):
        calls.append(payload[0, 0, 0])
        return payload + 1

    obs, _ = buf.assemble(decode)
    assert obs.images["b"][:, 0, 0, 0].tolist() == [11, 44]
    n = len(calls)
    buf.assemble(decode)
    assert len(calls) == n  # nothing decoded twice
    assert n == 4  # a: 0, 33; b: 10, 43


def test_old_messages_are_pruned():
    buf = ObservationBuffer(BufferConfig(("a",), n_obs_steps=2, obs_period=0.02))
    for i in range(1000):
        buf.add_image("a", i * 0.01, image(0), now_s=100.0)
    assert len(buf._streams["a"].stamps) < 200


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_obs_steps": 0}, "n_obs_steps"),
        ({"obs_period": 0.0}, "obs_period"),
        ({"stamp_tolerance": -1.0}, "stamp_tolerance"),
        ({"camera_names": ("a", "a")}, "camera_names"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    base = {"camera_names": ("a",), "n_obs_steps": 2, "obs_period": 0.02}
    with pytest.raises(ValueError, match=field):
        BufferConfig(**{**base, **kwargs})
