"""A node module as its own process (as `ros2 run` starts it), for tests and benchmarks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def start_node(module: str, params: Mapping[str, object], log: Path,
               remaps: Mapping[str, str] | None = None) -> subprocess.Popen:  # fmt: skip
    """`python -m module --ros-args -p key:=value ... -r from:=to ...`, stdout and stderr into
    `log`."""
    args = [sys.executable, "-m", module, "--ros-args"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    for src, dst in (remaps or {}).items():
        args += ["-r", f"{src}:={dst}"]
    with Path(log).open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def stop_node(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT (a clean rclpy shutdown), then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` every 20 ms; True as soon as it holds, False after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False
