"""The executor's tick thread: a fixed deadline grid, overruns skipped and counted, errors
survived, nothing after stop()."""

import threading
import time

import pytest

from action_diffusion_policy.runtime.ticker import Ticker, set_realtime


def test_ticks_stay_on_a_fixed_grid():
    times = []
    ticker = Ticker(0.01, lambda: times.append(time.monotonic()))
    ticker.start()
    time.sleep(0.5)
    ticker.stop()
    assert 35 <= len(times) <= 55, len(times)
    # Deadlines are start + k * period: the span of n ticks is (n - 1) periods, not more
    # (a re-armed timer drifts by each tick's own delay).
    span = times[-1] - times[0]
    assert abs(span - (len(times) - 1 - ticker.missed) * 0.01) < 0.01
    stats = ticker.stats()
    assert stats["ticks"] == len(times) and stats["late_p50_ms"] >= 0


def test_an_overrunning_tick_skips_deadlines_and_counts_them():
    calls = []

    def slow():
        calls.append(time.monotonic())
        if len(calls) == 3:
            time.sleep(0.055)  # 5.5 periods

    ticker = Ticker(0.01, slow)
    ticker.start()
    time.sleep(0.2)
    ticker.stop()
    assert ticker.missed >= 5
    gap = calls[3] - calls[2]
    assert 0.055 <= gap < 0.075  # the next tick comes on the grid after the overrun


def test_a_failing_tick_does_not_stop_the_loop():
    n = [0]

    def flaky():
        n[0] += 1
        if n[0] == 2:
            raise RuntimeError("driver gone")

    ticker = Ticker(0.005, flaky)
    ticker.start()
    time.sleep(0.1)
    ticker.stop()
    assert ticker.errors == 1 and "driver gone" in ticker.last_error
    assert n[0] > 5


def test_no_tick_after_stop_returns():
    n = [0]
    ticker = Ticker(0.002, lambda: n.__setitem__(0, n[0] + 1))
    ticker.start()
    time.sleep(0.05)
    ticker.stop()
    after = n[0]
    time.sleep(0.05)
    assert n[0] == after and not ticker.running


def test_scheduling_is_reported():
    ticker = Ticker(0.01, lambda: None, realtime_priority=0)
    assert "off" in ticker.start()
    ticker.stop()
    # Where permitted (root in a container) SCHED_FIFO is taken; elsewhere the reason says how
    # to permit it. Either way a string a log line can carry.
    result = {}
    thread = threading.Thread(target=lambda: result.update(why=set_realtime(10)))
    thread.start()
    thread.join()
    assert result["why"] == "" or "CAP_SYS_NICE" in result["why"]


def test_bad_period_is_refused():
    with pytest.raises(ValueError, match="period_s"):
        Ticker(0.0, lambda: None)
