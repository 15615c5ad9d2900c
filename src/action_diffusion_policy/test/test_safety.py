"""CommandLimiter: position clipping, per-tick step limit, non-finite input, hold."""

import numpy as np
import pytest

from action_diffusion_policy.runtime.safety import CommandLimiter


def limiter() -> CommandLimiter:
    return CommandLimiter(lower=[-1.0, 0.0], upper=[1.0, 1.0], max_velocity=[2.0, 0.5])


def test_no_command_before_state():
    lim = limiter()
    command, status = lim.step([0.0, 0.0], dt=0.1, now_s=0.0)
    assert command is None and status.hold_reason == "no_state"


def test_position_then_step_limit():
    lim = limiter()
    assert lim.reset([0.0, 0.5])
    command, status = lim.step([5.0, 0.9], dt=0.1, now_s=0.0)
    # clip to [1.0, 0.9], then at most 2.0 * 0.1 = 0.2 and 0.5 * 0.1 = 0.05 per tick
    np.testing.assert_allclose(command, [0.2, 0.55])
    assert status.n_position_clipped == 1 and status.n_step_clipped == 2
    command, _ = lim.step([5.0, 0.9], dt=0.1, now_s=0.1)
    np.testing.assert_allclose(command, [0.4, 0.6])
    command, status = lim.step([0.45, 0.6], dt=0.1, now_s=0.2)  # reachable: exact
    np.testing.assert_allclose(command, [0.45, 0.6])
    assert status.n_step_clipped == 0 and status.n_position_clipped == 0


def test_nonfinite_entries_keep_last_value():
    lim = limiter()
    lim.reset([0.3, 0.4])
    command, status = lim.step([np.nan, 0.42], dt=0.1, now_s=0.0)
    np.testing.assert_allclose(command, [0.3, 0.42])
    assert status.n_nonfinite == 1
    command, status = lim.step([np.inf, -np.inf], dt=0.1, now_s=0.1)
    np.testing.assert_allclose(command, [0.3, 0.42])
    assert np.isfinite(command).all() and status.n_nonfinite == 2


def test_hold_reports_duration_and_reset_rejects_nonfinite():
    lim = limiter()
    assert not lim.reset([np.nan, 0.0]) and not lim.initialized
    lim.reset([0.1, 0.2])
    command, status = lim.step(None, dt=0.1, now_s=5.0, hold_reason="timeout")
    np.testing.assert_allclose(command, [0.1, 0.2])
    assert status.holding and status.hold_reason == "timeout" and status.hold_duration == 0.0
    _, status = lim.step(None, dt=0.1, now_s=5.3, hold_reason="not_covered")
    assert status.hold_duration == pytest.approx(0.3) and status.hold_reason == "not_covered"
    _, status = lim.step([0.1, 0.2], dt=0.1, now_s=5.4)
    assert not status.holding
    _, status = lim.step(None, dt=0.1, now_s=6.0)
    assert status.hold_duration == 0.0


def test_reset_clips_measured_state_and_inf_velocity_means_no_step_limit():
    lim = CommandLimiter(lower=[-1.0], upper=[1.0], max_velocity=[np.inf])
    lim.reset([3.0])
    np.testing.assert_allclose(lim.last, [1.0])
    command, _ = lim.step([-1.0], dt=0.0, now_s=0.0)
    np.testing.assert_allclose(command, [-1.0])


def test_bad_limits_are_errors():
    with pytest.raises(ValueError, match="lower > upper"):
        CommandLimiter([1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="max_velocity"):
        CommandLimiter([0.0], [1.0], [0.0])
