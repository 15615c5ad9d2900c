"""A periodic tick on its own thread, on absolute CLOCK_MONOTONIC deadlines (no rclpy).

rclpy timers run inside the executor's Python callback loop: a tick waits behind whatever
callback (a chunk, joint states, a service) is running, and the deadline is re-armed from
when the callback ran. Here the thread sleeps to just before each deadline, spins the last
``spin_s`` to it, calls the tick, and keeps the deadlines on a fixed grid (a late tick does
not shift the next ones; missed deadlines are skipped and counted). Where the process may,
the thread runs under SCHED_FIFO so that inference beside it does not delay it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

RT_HINT = ("real-time scheduling not permitted for this process; ticks run at normal priority "
           "and may be late by milliseconds while other processes compute (permit it with "
           "CAP_SYS_NICE, or an 'rtprio' limit in /etc/security/limits.conf, or "
           "`docker run --cap-add SYS_NICE --ulimit rtprio=99`)")


def set_realtime(priority: int) -> str:
    """SCHED_FIFO at ``priority`` for the calling thread; returns "" or why it could not."""
    if priority <= 0:
        return "real-time scheduling off (realtime_priority 0)"
    if not hasattr(os, "sched_setscheduler"):
        return "real-time scheduling is not available on this OS"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: this thread
    except (PermissionError, OSError):
        return RT_HINT
    return ""


class Ticker:
    """Calls ``tick()`` every ``period_s`` from a thread until ``stop()``."""

    def __init__(self, period_s: float, tick: Callable[[], None], *, spin_s: float = 2e-4,
                 realtime_priority: int = 0, name: str = "tick", history: int = 2500):
        if not period_s > 0:
            raise ValueError(f"period_s: expected > 0 s, got {period_s!r}")
        self.period_s = float(period_s)
        self.spin_s = min(max(float(spin_s), 0.0), self.period_s / 2)
        self.realtime_priority = int(realtime_priority)
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()
        self.scheduling = ""  # what the thread runs under, for the log
        self.lateness = deque(maxlen=history)  # s, wake-up time minus deadline
        self.missed = 0  # deadlines skipped because a tick overran
        self.ticks = 0
        self.errors = 0
        self.last_error = ""

    def start(self) -> str:
        """Start the thread; returns its scheduling (SCHED_FIFO or why not)."""
        self._thread.start()
        self._started.wait(5.0)
        return self.scheduling

    def stop(self, timeout: float = 1.0) -> None:
        """Stop after the tick in progress (if any); no tick starts after this returns."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stats(self) -> dict:
        """Lateness of the wake-ups (ms) over the recent history."""
        late = np.asarray(self.lateness, dtype=np.float64) * 1e3
        if late.size == 0:
            return {"ticks": self.ticks, "missed": self.missed}
        return {"ticks": self.ticks, "missed": self.missed,
                "late_p50_ms": float(np.percentile(late, 50)),
                "late_p99_ms": float(np.percentile(late, 99)),
                "late_max_ms": float(late.max())}

    def _run(self) -> None:
        why_not = set_realtime(self.realtime_priority)
        self.scheduling = why_not or f"SCHED_FIFO priority {self.realtime_priority}"
        self._started.set()
        clock = time.monotonic
        deadline = clock() + self.period_s
        while not self._stop.is_set():
            remaining = deadline - clock() - self.spin_s
            if remaining > 0:
                time.sleep(remaining)
            while clock() < deadline:  # the last spin_s: a sleep's wake-up is too coarse
                pass
            if self._stop.is_set():
                break
            self.lateness.append(clock() - deadline)
            try:
                self._tick()
            except Exception as exc:  # a failing tick must not end the control loop silently
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.ticks += 1
            deadline += self.period_s
            behind = clock() - deadline
            if behind > 0:  # overran: skip the deadlines already past, keep the grid
                skipped = int(behind // self.period_s) + 1
                self.missed += skipped
                deadline += skipped * self.period_s
