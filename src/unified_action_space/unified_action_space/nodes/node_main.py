"""One ``main()`` for every node: the same exit codes and the same shutdown.

    def main(args=None) -> int:
        return run_node(MyNode, "my_node", args)

Exit codes:
    0  stopped by SIGINT or SIGTERM, or the node finished its job (``finished``)
    1  an unexpected error (traceback on stderr), or the stop overran its deadline
    2  a configuration error: a bad parameter, file or embodiment (one line on stderr naming it)

On SIGINT or SIGTERM the node stops at once, whatever ``/clock`` does (a sim that stopped at
the same Ctrl-C, a bag at its end): no further callback runs (so no timer publishes another
command), ``halt`` stops the node's own threads, then ``close`` and ``destroy_node`` release
it, and the process ends there (``os._exit`` once the output is flushed: the interpreter's own
teardown of DDS and of large modules took 0.3 s idle and over 1 s on a busy machine). It is gone
within ``STOP_DEADLINE_S`` of the signal: past it, it exits at once with code 1 (a watchdog
thread), and should even that not run (a call that holds the GIL), ``faulthandler`` prints
every thread's stack and exits. A second signal exits at once.

How: rclpy's own signal handlers are not installed (they shut the context down under the
running callbacks, so a timer's ``publish`` raised "publisher's context is invalid"); the
callbacks run in a spin thread, and the main thread only waits, so Python's signal handler runs
as soon as the signal arrives instead of after a blocking ``rcl_wait``.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
STOP_DEADLINE_S = 0.8  # signal -> process gone (clean stop or watchdog)
HARD_DEADLINE_S = 0.95  # faulthandler's backstop, which needs no GIL
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_WAIT_PERIOD_S = 0.05

NodeHook = Callable[[object], object]


class _Stop:
    """What the signal handler and the spin thread tell the main thread."""

    def __init__(self, name: str):
        self.name = name
        self.event = threading.Event()
        self.signum: int | None = None
        self.starting = True  # signals during start-up abort it (KeyboardInterrupt)
        self.error = False

    def on_signal(self, signum: int, _frame) -> None:
        if self.signum is not None:  # a second signal: no more waiting
            _exit_now(EXIT_ERROR, f"{self.name}: second {signal.Signals(signum).name}; exiting")
        self.signum = signum
        self.event.set()
        _arm_deadline(self.name, signal.Signals(signum).name)
        if self.starting:
            raise KeyboardInterrupt


def _exit_now(code: int, message: str = "") -> None:
    """End the process now: flush Python's and C's buffered output, skip the teardown."""
    with contextlib.suppress(Exception):
        if message:
            print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)  # rcutils logs through C stdio
    os._exit(code)


def _arm_deadline(name: str, what: str) -> None:
    timer = threading.Timer(
        STOP_DEADLINE_S,
        _exit_now,
        (EXIT_ERROR, f"{name}: still stopping {STOP_DEADLINE_S:g} s after {what}; exiting now"),
    )
    timer.daemon = True
    timer.start()
    with contextlib.suppress(Exception):  # stderr without a file descriptor (embedded)
        faulthandler.dump_traceback_later(HARD_DEADLINE_S, exit=True)


def run_node(
    make_node: Callable[[], object],
    name: str,
    args: Sequence[str] | None = None,
    *,
    config_errors: tuple[type[BaseException], ...] = (ValueError,),
    start: Callable[[object], bool | None] | None = None,
    halt: NodeHook | None = None,
    close: NodeHook | None = None,
    finished: Callable[[object], bool] | None = None,
) -> int:
    """Initialise rclpy, build the node, spin it until a signal (or ``finished``), stop it.

    make_node: builds the node; a ``config_errors`` exception is a configuration error (exit 2).
    start: called once before spinning (a lifecycle node's configure + activate); False: it
        failed and said why (exit 2).
    halt: on stop, right after the callbacks stopped: stop the node's own threads publishing.
    close: then release what the node holds (close a bag) before ``destroy_node``.
    finished: polled while spinning; True ends the run with exit code 0 (a bag played out).
    """
    stop = _Stop(name)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if main_thread:
        previous = {s: signal.signal(s, stop.on_signal) for s in SIGNALS}
    node = None
    executor = None
    spinner = None
    code = EXIT_OK
    try:
        try:
            rclpy.init(
                args=None if args is None else list(args),
                signal_handler_options=SignalHandlerOptions.NO if main_thread else None,
            )
            node = make_node()
            if start is not None and start(node) is False:
                return EXIT_CONFIG
        except config_errors as exc:
            print(f"{name}: {exc}", file=sys.stderr, flush=True)
            return EXIT_CONFIG
        except KeyboardInterrupt:  # a signal during start-up
            return EXIT_OK
        stop.starting = False
        if stop.signum is not None:
            return EXIT_OK

        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(
            target=_spin, args=(executor, stop), name=f"{name}_spin", daemon=True
        )
        spinner.start()
        while not stop.event.wait(_WAIT_PERIOD_S):
            if finished is not None and finished(node):
                break
        code = EXIT_ERROR if stop.error else EXIT_OK
    except KeyboardInterrupt:
        code = EXIT_OK
    finally:
        stop.starting = False
        _shutdown(node, executor, spinner, halt, close)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if stop.signum is not None:
            _exit_now(code)
    return code


def _spin(executor: SingleThreadedExecutor, stop: _Stop) -> None:
    try:
        executor.spin()
    except BaseException:
        if not stop.event.is_set():  # errors once stopping are the shutdown's, not the node's
            stop.error = True
            traceback.print_exc()
    finally:
        stop.event.set()


def _shutdown(node, executor, spinner, halt, close) -> None:
    """Callbacks first (no timer publishes again), then the node's threads, then the rest."""
    started = time.monotonic()
    if executor is not None:
        executor.shutdown(timeout_sec=0)
    if node is not None and halt is not None:
        _quietly(halt, node)
    if spinner is not None:
        spinner.join(timeout=max(0.0, 0.5 * STOP_DEADLINE_S - (time.monotonic() - started)))
    if node is not None:
        if close is not None:
            _quietly(close, node)
        _quietly(lambda n: n.destroy_node(), node)
    with contextlib.suppress(Exception):
        rclpy.try_shutdown()


def _quietly(hook: NodeHook, node) -> None:
    try:
        hook(node)
    except Exception:
        traceback.print_exc()
