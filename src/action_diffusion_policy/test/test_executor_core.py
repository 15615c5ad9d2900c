"""ExecutorCore: ensembler -> timeout/hold -> limiter, as the executor node runs it."""

import numpy as np
import pytest

from action_diffusion_policy.runtime.ensembler import EnsemblerConfig
from action_diffusion_policy.runtime.executor import ExecutorCore

SLOTS = [0, 10]


def core(**kwargs) -> ExecutorCore:
    return ExecutorCore(
        SLOTS, lower=[-1.0, 0.0], upper=[1.0, 1.0], max_velocity=[1.0, 1.0], rate_hz=10.0, **kwargs
    )


def test_nothing_before_measured_state_then_holds_it():
    ex = core()
    command, status = ex.tick(0.0)
    assert command is None and status.hold_reason == "no_state"
    ex.set_measured([0.2, 0.5])
    command, status = ex.tick(0.1)
    np.testing.assert_allclose(command, [0.2, 0.5])
    assert status.holding and status.hold_reason == "no_chunks"


def test_follows_chunk_within_step_limit_then_times_out():
    ex = core(chunk_timeout=0.35)
    ex.set_measured([0.0, 0.5])
    chunk = np.array([[0.05 * i, 0.5] for i in range(20)])
    assert ex.add_chunk(1.0, 0.1, SLOTS, chunk) == "accepted"
    # t = 1.2: row 2 -> 0.10, step limit 1.0 / 10 Hz = 0.1 -> reachable
    command, status = ex.tick(1.2)
    np.testing.assert_allclose(command, [0.1, 0.5])
    assert not status.holding and status.chunk_age == pytest.approx(0.2)
    command, _ = ex.tick(1.3)
    np.testing.assert_allclose(command, [0.15, 0.5])
    # t = 1.4: chunk age 0.4 > 0.35 -> hold the last command although the chunk covers now
    command, status = ex.tick(1.4)
    np.testing.assert_allclose(command, [0.15, 0.5])
    assert status.holding and status.hold_reason == "timeout" and status.n_covering == 1


def test_disabled_commands_nothing_and_reenable_starts_from_measured():
    ex = core()
    ex.set_measured([0.0, 0.5])
    ex.add_chunk(0.0, 0.1, SLOTS, np.full((50, 2), 0.05))
    assert ex.tick(0.0)[0] is not None
    ex.set_enabled(False)
    command, status = ex.tick(0.1)
    assert command is None and not status.enabled and status.hold_reason == "disabled"
    ex.set_measured([0.9, 0.9])
    ex.set_enabled(True)
    command, _ = ex.tick(0.2)
    # from the measured 0.9 toward 0.05, at most 0.1 per tick
    np.testing.assert_allclose(command, [0.8, 0.8])


def test_rejected_chunks_are_never_executed():
    ex = core(ensembler_config=EnsemblerConfig(strategy="receding_horizon"))
    ex.set_measured([0.0, 0.5])
    bad = np.full((10, 2), 0.05)
    bad[0, 0] = np.nan
    assert ex.add_chunk(0.0, 0.1, SLOTS, bad) == "rejected_nonfinite"
    assert ex.add_chunk(0.0, 0.1, [0, 60], np.zeros((10, 2))) == "rejected_slots"
    command, status = ex.tick(0.0)
    np.testing.assert_allclose(command, [0.0, 0.5])
    assert status.hold_reason == "no_chunks"


def test_time_jump_back_clears_chunks():
    ex = core()
    ex.set_measured([0.0, 0.5])
    ex.add_chunk(100.0, 0.1, SLOTS, np.zeros((10, 2)))
    ex.tick(100.0)
    _, status = ex.tick(0.0)  # sim restarted
    assert ex.time_jumps_back == 1 and status.hold_reason == "no_chunks"


def test_new_episode_drops_old_chunks_and_restarts_from_the_reset_arms():
    ex = core()
    ex.set_measured([0.0, 0.5])
    ex.add_chunk(1.0, 0.1, SLOTS, np.full((50, 2), 0.9))  # last episode: arms going to 0.9
    for t in (1.0, 1.1, 1.2):
        last, _ = ex.tick(t)
    np.testing.assert_allclose(last, [0.3, 0.8])
    ex.new_episode(2.0)
    # Nothing until the reset arms are measured: not the last episode's command.
    command, status = ex.tick(2.0)
    assert command is None and status.hold_reason == "no_state"
    # A chunk observed before the reset (in flight during it) is refused, a new one accepted.
    assert ex.add_chunk(1.95, 0.1, SLOTS, np.full((50, 2), 0.9)) == "rejected_before_reset"
    assert ex.rejected_before_reset == 1
    ex.set_measured([-0.5, 0.1])
    command, status = ex.tick(2.1)
    np.testing.assert_allclose(command, [-0.5, 0.1])  # holds the reset arms
    assert status.hold_reason == "no_chunks"
    assert ex.add_chunk(2.1, 0.1, SLOTS, np.full((50, 2), 0.0)) == "accepted"
    command, _ = ex.tick(2.2)
    np.testing.assert_allclose(command, [-0.4, 0.0])  # from the reset arms, step-limited


def test_chunk_stamped_in_the_future_is_refused_and_never_executed():
    ex = core(future_tolerance=0.5)
    ex.set_measured([0.0, 0.5])
    far = np.full((400, 2), 0.9)
    # Stamped 30 s ahead (clock skew): refused, counted, and not kept for later.
    assert ex.add_chunk(40.0, 0.1, SLOTS, far, now_s=10.0) == "rejected_future"
    assert ex.rejected_future == 1
    for t in (10.0, 40.0, 41.0):  # also when its time comes
        command, status = ex.tick(t)
        np.testing.assert_allclose(command, [0.0, 0.5])
        assert status.hold_reason == "no_chunks"
    # Within the tolerance (0.5 s ahead exactly) it is accepted and executed on time.
    assert ex.add_chunk(41.5, 0.1, SLOTS, far, now_s=41.0) == "accepted"
    assert ex.rejected_future == 1
    command, status = ex.tick(41.5)
    np.testing.assert_allclose(command, [0.1, 0.6])  # toward 0.9 at 1.0 / 10 Hz per tick
    assert not status.holding
    # A NaN stamp is never "within" the tolerance.
    assert ex.add_chunk(float("nan"), 0.1, SLOTS, far, now_s=41.5) == "rejected_future"
    with pytest.raises(ValueError, match="future_tolerance"):
        core(future_tolerance=-1.0)


def test_first_motion_after_enabling_ramps_up_from_a_slow_fraction():
    ex = core(start_ramp_s=1.0, start_speed_fraction=0.1, enabled=False, chunk_timeout=100.0)
    ex.set_measured([0.0, 0.5])
    ex.add_chunk(0.0, 0.1, SLOTS, np.full((100, 2), 1.0))  # far: every tick is step-limited
    assert ex.tick(0.0)[0] is None
    assert ex.set_enabled(True)
    steps, last = [], 0.0
    for k in range(1, 15):
        command, _ = ex.tick(0.1 * k)
        steps.append(command[0] - last)
        last = command[0]
    # 0.1 of the 0.1 per tick limit at first, rising linearly to all of it after 1 s
    np.testing.assert_allclose(steps[:3], [0.01, 0.019, 0.028], atol=1e-9)
    np.testing.assert_allclose(steps[11:], [0.1] * 3, atol=1e-9)
    assert np.all(np.diff(steps[:11]) > 0)
    # Disabling and enabling again starts a new ramp.
    ex.set_enabled(False)
    ex.set_enabled(True)
    before = ex.tick(2.0)[0][0]
    assert ex.tick(2.1)[0][0] - before == pytest.approx(0.019)


def test_lost_heartbeat_holds_and_its_return_ramps_again():
    ex = core(heartbeat_timeout=0.25, start_ramp_s=0.5, start_speed_fraction=0.5,
              chunk_timeout=100.0)
    ex.set_measured([0.0, 0.5])
    ex.add_chunk(0.0, 0.1, SLOTS, np.full((100, 2), 1.0))
    command, status = ex.tick(0.0)  # no heartbeat ever: hold the measured state
    assert status.holding and status.hold_reason == "heartbeat_lost"
    np.testing.assert_allclose(command, [0.0, 0.5])
    for k in range(1, 8):
        ex.heartbeat(0.1 * k)
        command, status = ex.tick(0.1 * k)
        assert not status.holding
    moving = command.copy()
    for k in range(8, 12):  # the deadman is let go: 0.25 s later the arm holds
        command, status = ex.tick(0.1 * k)
    assert status.holding and status.hold_reason == "heartbeat_lost"
    held = command.copy()
    assert held[0] > moving[0] and ex.tick(1.2)[0][0] == held[0]
    ex.heartbeat(1.3)
    command, status = ex.tick(1.3)
    assert status.speed_scale == pytest.approx(0.5) and command[0] - held[0] == pytest.approx(0.05)


def test_estop_latches_until_released_and_enabled_again():
    ex = core()
    ex.set_measured([0.0, 0.5])
    ex.add_chunk(0.0, 0.1, SLOTS, np.full((100, 2), 1.0))
    assert ex.tick(0.0)[0] is not None
    ex.estop()
    command, status = ex.tick(0.1)
    assert command is None and status.hold_reason == "estop"
    assert ex.set_enabled(True) is False and ex.tick(0.2)[0] is None  # still latched
    ex.release_estop()
    assert ex.tick(0.3)[0] is None  # released, but not enabled yet
    assert ex.set_enabled(True) is True and ex.tick(0.4)[0] is not None


@pytest.mark.parametrize("kwargs, name", [
    ({"start_ramp_s": -1.0}, "start_ramp_s"),
    ({"start_speed_fraction": 0.0}, "start_speed_fraction"),
    ({"start_speed_fraction": 1.5}, "start_speed_fraction"),
    ({"heartbeat_timeout": -0.1}, "heartbeat_timeout"),
])
def test_bad_safety_settings_name_the_setting(kwargs, name):
    with pytest.raises(ValueError, match=name):
        core(**kwargs)
