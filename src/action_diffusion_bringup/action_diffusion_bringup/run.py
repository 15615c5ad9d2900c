"""Start a bringup without `ros2 launch`: the same nodes, from the same description.

    python -m action_diffusion_bringup.run sim policy:=false expert:=true
    python -m action_diffusion_bringup.run real robot:=piper checkpoint:=DIR
    run record --show-args            # (console script) the arguments and their descriptions
    run sim checkpoint:=DIR --dry-run # print the command lines, start nothing

Each node runs as its own process, started exactly as launch_ros would start it:
`install/<pkg>/lib/<pkg>/<exe> --ros-args -r __node:=NAME [-r __ns:=NS] --params-file FILE
-p name:=value -r from:=to`. Their output is prefixed with the node name. Ctrl-C or SIGTERM is
forwarded to every node; when a required node exits on its own the others are stopped too.
Nodes that do not stop within the timeout are killed. The exit status is non-zero when a
required node failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from action_diffusion_bringup import description
from action_diffusion_bringup.description import BringupError, NodeSpec

_POLL_PERIOD_S = 0.1

# Domains the self-contained sim runners (collect, evaluate, demo) claim when the user set none.
# Tests use 1-100 and the bag tools 101-200 (conftest.py, testing/make_sample_bag.py).
PRIVATE_DOMAINS = range(201, 233)  # Fast DDS's port formula allows domain ids up to 232
_claimed_domain_locks: list = []  # open lock files: closing one releases its domain


def claim_private_domain(env: MutableMapping[str, str] | None = None) -> str:
    """Give this run a ROS domain of its own unless the user chose one; return the domain id.

    Two sim runs in the same domain see each other's topics: one run's sim and policy answer
    the other's resets and commands, and both fail in ways that look like a bad policy. When
    ROS_DOMAIN_ID is unset, a domain from PRIVATE_DOMAINS is locked for the life of this
    process (an flock, released by the kernel even on SIGKILL) and discovery is kept on this
    host. Set ROS_DOMAIN_ID to watch the run from rviz or `ros2 topic`.
    """
    import fcntl
    import random
    import tempfile

    env = os.environ if env is None else env
    if env.get("ROS_DOMAIN_ID"):
        return env["ROS_DOMAIN_ID"]
    candidates = list(PRIVATE_DOMAINS)
    random.shuffle(candidates)
    for domain in candidates:
        path = Path(tempfile.gettempdir()) / f"action_diffusion_ros_domain_{domain}.lock"
        handle = open(path, "a")  # noqa: SIM115 (held open: the lock lives as long as the process)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _claimed_domain_locks.append(handle)
        env["ROS_DOMAIN_ID"] = str(domain)
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        return str(domain)
    raise BringupError(
        f"all ROS domains {PRIVATE_DOMAINS.start}-{PRIVATE_DOMAINS.stop - 1} are taken by "
        "other sim runs on this machine; set ROS_DOMAIN_ID to choose one"
    )


def executable_path(spec: NodeSpec) -> Path:
    """`<prefix>/lib/<package>/<executable>` of the installed package, or a BringupError."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = Path(get_package_prefix(spec.package))
    except PackageNotFoundError:
        raise BringupError(
            f"package {spec.package} (node {spec.name}) is not installed; build the workspace "
            "(bash scripts/setup.sh) and source scripts/env.sh"
        ) from None
    path = prefix / "lib" / spec.package / spec.executable
    if not os.access(path, os.X_OK):
        raise BringupError(
            f"executable {spec.executable} of package {spec.package} not found at {path}; "
            "rebuild with bash scripts/setup.sh"
        )
    return path


@dataclass
class _Running:
    spec: NodeSpec
    process: subprocess.Popen
    reader: threading.Thread


class BringupRunner:
    """Starts node processes, relays their output, and stops them all together.

    Use as a context manager (`with BringupRunner(specs) as runner: runner.wait()`): leaving
    the block stops every node that is still running.
    """

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        *,
        stop_timeout: float = 5.0,
        output: TextIO | None = None,
        env: Mapping[str, str] | None = None,
        config_dir: Path | None = None,
    ) -> None:
        names = [spec.fully_qualified_name for spec in specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise BringupError(f"two nodes would have the same name: {', '.join(duplicates)}")
        self.specs = list(specs)
        self.stop_timeout = stop_timeout
        self._output = output or sys.stdout
        self._output_lock = threading.Lock()
        base = {**os.environ, **(env or {})}
        self._env = {**base, **description.dds_environment(base, config_dir),
                     "PYTHONUNBUFFERED": "1"}
        self._config_dir = config_dir
        self._running: list[_Running] = []
        self._stop_requested = threading.Event()
        self._stop_signal = signal.SIGINT
        self.failures: list[str] = []

    # -- output -----------------------------------------------------------------------------

    def log(self, line: str) -> None:
        self._write("run", line)

    def _write(self, name: str, line: str) -> None:
        with self._output_lock:
            self._output.write(f"[{name}] {line}\n")
            self._output.flush()

    def _relay(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            self._write(name, raw.decode(errors="replace").rstrip("\n"))
        stream.close()

    # -- life cycle -------------------------------------------------------------------------

    @property
    def pids(self) -> dict[str, int]:
        return {item.spec.name: item.process.pid for item in self._running}

    def exited(self) -> dict[str, int]:
        """Name -> exit code of every node that has stopped."""
        codes = {item.spec.name: item.process.poll() for item in self._running}
        return {name: code for name, code in codes.items() if code is not None}

    def commands(self) -> list[list[str]]:
        return [
            description.node_command(spec, executable_path(spec), self._config_dir)
            for spec in self.specs
        ]

    def start(self) -> None:
        # Every command is built (files and executables checked) before the first node starts.
        commands = self.commands()
        for spec, command in zip(self.specs, commands):
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                # Own process group: a terminal's Ctrl-C reaches the runner only, which then
                # stops the nodes in order; killpg also reaches anything a node spawned.
                start_new_session=True,
            )
            reader = threading.Thread(
                target=self._relay, args=(spec.name, process.stdout), daemon=True
            )
            reader.start()
            self._running.append(_Running(spec, process, reader))
            self.log(
                f"started {spec.fully_qualified_name} (pid {process.pid}): {' '.join(command)}"
            )

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Ask `wait()` to stop every node with `signum` (safe from a signal handler)."""
        self._stop_signal = signal.Signals(signum)
        self._stop_requested.set()

    def wait(self, timeout: float | None = None) -> int:
        """Until a stop request, a required node's exit, or `timeout`; then stop all. Exit code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        exited: set[str] = set()
        while not self._stop_requested.is_set():
            for item in self._running:
                code = item.process.poll()
                if code is None or item.spec.name in exited:
                    continue
                exited.add(item.spec.name)
                if item.spec.required:
                    if code != 0:
                        self.failures.append(f"{item.spec.name} exited with code {code}")
                    self.log(f"{item.spec.name} exited with code {code}; stopping the bringup")
                    self.request_stop(signal.SIGINT)
                else:
                    self.log(f"{item.spec.name} (optional) exited with code {code}")
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._stop_requested.wait(_POLL_PERIOD_S)
        self.stop(self._stop_signal)
        for failure in self.failures:
            self.log(f"FAILED: {failure}")
        return 1 if self.failures else 0

    def stop(self, signum: int = signal.SIGINT) -> None:
        """Signal every running node, wait up to stop_timeout, SIGKILL the rest, reap all."""
        alive = [item for item in self._running if item.process.poll() is None]
        for item in reversed(alive):  # drivers of the others (the sim, the clock) go last
            self._signal_group(item.process, signum)
        deadline = time.monotonic() + self.stop_timeout
        for item in alive:
            try:
                item.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(
                    f"{item.spec.name} did not stop within {self.stop_timeout:.0f} s; killing it"
                )
        for item in self._running:
            # SIGKILL the group even after the leader exited, so nothing it spawned survives.
            self._signal_group(item.process, signal.SIGKILL)
            item.process.wait()
            item.reader.join(timeout=2.0)

    @staticmethod
    def _signal_group(process: subprocess.Popen, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)

    def __enter__(self) -> BringupRunner:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def run(
    bringup: str,
    given: Mapping[str, str] | None = None,
    *,
    stop_timeout: float = 5.0,
    duration: float | None = None,
) -> int:
    """Start `bringup`, forward SIGINT/SIGTERM to its nodes, return the exit status."""
    runner = BringupRunner(description.describe(bringup, given), stop_timeout=stop_timeout)
    previous = {
        signum: signal.signal(signum, lambda received, _frame: runner.request_stop(received))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        runner.start()
        runner.log(f"{bringup} bringup running ({len(runner.specs)} nodes); Ctrl-C stops it")
        return runner.wait(timeout=duration)
    finally:
        runner.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _show_arguments(bringup: str) -> None:
    print(f"{bringup}: {description.BRINGUPS[bringup].summary}\n\narguments (name:=value):")
    for arg in description.arguments(bringup):
        choices = f" [{'|'.join(arg.choices)}]" if arg.choices else ""
        print(f"  {arg.name}{choices} (default: {arg.default!r})\n      {arg.description}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run",
        description="Start a bringup (the nodes of the launch file of the same name) without "
        "ros2 launch.",
    )
    parser.add_argument("bringup", choices=description.bringup_names())
    parser.add_argument("launch_args", nargs="*", metavar="name:=value")
    parser.add_argument("--show-args", action="store_true", help="list the arguments and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, start none")
    parser.add_argument(
        "--stop-timeout", type=float, default=5.0, help="seconds a node gets to stop (then SIGKILL)"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="stop everything after this many seconds"
    )
    options = parser.parse_args(argv)
    if options.show_args:
        _show_arguments(options.bringup)
        return 0
    try:
        given = description.parse_launch_args(options.launch_args)
        if options.dry_run:
            runner = BringupRunner(description.describe(options.bringup, given))
            for command in runner.commands():
                print(" ".join(command))
            return 0
        return run(
            options.bringup, given, stop_timeout=options.stop_timeout, duration=options.duration
        )
    except BringupError as error:
        print(f"[run] error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
