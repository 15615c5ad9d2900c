#!/usr/bin/env bash
# Set up everything `make test` and `make demo` need, from nothing, idempotently:
#   1. .venv with ROS 2 Jazzy from PyPI wheels (skipped when a system ROS 2 is sourced),
#      torch (CPU) and the pinned Python dependencies;
#   2. colcon build of the workspace into install/.
# Each step leaves a stamp in .venv/.stamps holding the hash of its inputs; a step whose stamp
# matches is skipped, so a re-run with nothing changed takes seconds, and a step interrupted
# half-way has no stamp and is redone (pip repairs a half-installed venv in place).
# Nothing outside the repository is changed: the wheels' CMake files name their build machine's
# Python paths, and we rewrite them inside .venv (see docs/ROS2_FROM_PYPI.md in this repo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMPS="$VENV/.stamps"
PYTHON="${PYTHON:-python3}"
LOG="$ROOT/build/setup.log"
mkdir -p "$ROOT/build"
# One set-up at a time per checkout (two shells, or make test while make demo runs).
exec 9>"$ROOT/build/.setup.lock"
flock 9
: >"$LOG"

step() { printf '[setup] %s\n' "$*"; }
fail() {
  printf '[setup] FAILED: %s\n' "$1" >&2
  printf '[setup]   what to do: %s\n' "$2" >&2
  printf '[setup]   full log: %s\n' "$LOG" >&2
  exit 1
}
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" >"$STAMPS/$1"; }
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" >>"$LOG" 2>&1; }

SYSTEM_ROS=0
if [ -n "${ROS_DISTRO:-}" ]; then
  SYSTEM_ROS=1
  step "system ROS 2 '$ROS_DISTRO' is sourced: building against it, no ROS wheels installed"
fi

# --- Python ---------------------------------------------------------------------------------
if [ "$SYSTEM_ROS" = 1 ]; then
  # The system's rclpy was built for its own Python (3.12 on Ubuntu 24.04): use that one.
  if ! "$PYTHON" -c 'import rclpy' >/dev/null 2>&1; then
    fail "'$PYTHON' cannot import the sourced ROS 2's rclpy" \
      "run with PYTHON set to the interpreter ROS 2 '$ROS_DISTRO' was built for (usually /usr/bin/python3)"
  fi
elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  fail "need CPython 3.11 (ROS 2 Jazzy wheels are cp311); '$PYTHON' is $("$PYTHON" --version 2>&1 || echo missing)" \
    "install Python 3.11 and run again with PYTHON=/path/to/python3.11"
fi

# --- venv -----------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  step "creating .venv"
  rm -rf "$VENV"
  if [ "$SYSTEM_ROS" = 1 ]; then
    # The system's rclpy and message packages live in the system site-packages.
    "$PYTHON" -m venv --system-site-packages "$VENV" >>"$LOG" 2>&1 || fail "creating .venv" "check that python3-venv is installed"
  else
    "$PYTHON" -m venv "$VENV" >>"$LOG" 2>&1 || fail "creating .venv" "check that python3-venv is installed"
  fi
fi

# --- ROS 2 Jazzy wheels ---------------------------------------------------------------------
if [ "$SYSTEM_ROS" = 0 ]; then
  h=$(hash_of requirements/ros-jazzy.txt)
  if ! stamp_ok ros "$h"; then
    step "installing ROS 2 Jazzy from PyPI wheels (first time: a few minutes)"
    rm -f "$STAMPS/ros"
    pip_install -r requirements/ros-jazzy.txt ||
      fail "installing ROS 2 Jazzy wheels (requirements/ros-jazzy.txt)" "check that PyPI is reachable (pip config list), then run again"
    # Quirk: the wheels' exported CMake targets name /opt/python/cp311-cp311/... of the build
    # machine. Point them at this venv's Python and numpy headers, inside .venv only.
    py_inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    np_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
    grep -rl '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null | while read -r f; do
      sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
    done
    stamp_set ros "$h"
  fi
fi

# --- torch and Python dependencies ----------------------------------------------------------
h=$(hash_of requirements/python.txt requirements/dev.txt requirements/sim-assets.txt)
if ! stamp_ok python "$h"; then
  step "installing torch (CPU) and the pinned Python dependencies"
  rm -f "$STAMPS/python"
  # torch first, alone: torch==2.13.0 resolves to the CPU wheel on these machines; a later
  # requirement that admits 2.13.0 then installs nothing more (no CUDA packages pulled in).
  if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
    pip_install "torch==${TORCH_VERSION:-2.13.0}" ||
      fail "installing torch==${TORCH_VERSION:-2.13.0}" "check that PyPI is reachable; on a CUDA machine set TORCH_VERSION and the index as in docker/Dockerfile"
  fi
  pip_install -r requirements/python.txt -r requirements/dev.txt ||
    fail "installing requirements/python.txt and requirements/dev.txt" "check that PyPI is reachable, then run again"
  pip_install --no-deps -r requirements/sim-assets.txt ||
    fail "installing the simulator model files (requirements/sim-assets.txt)" "check that PyPI is reachable, then run again"
  if [ "$SYSTEM_ROS" = 0 ]; then
    pip_install ros-jazzy-std-srvs ||
      fail "installing ros-jazzy-std-srvs" "check that PyPI is reachable, then run again"
  fi
  stamp_set python "$h"
fi

# --- colcon build ---------------------------------------------------------------------------
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if [ "$SYSTEM_ROS" = 0 ]; then
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
fi
# Driver stand-ins (src/driver_standins/, TEST ONLY): each mirrors a vendor interface package
# that cannot be installed here. Where the real package is importable from the underlay (the
# robot PC's ROS installation, or the venv), i.e. with this workspace's own install/ and build/
# off the paths, the stand-in is skipped and any copy of it left in install/ from an earlier
# build is removed, so the real package is the one found.
standin_skip=()
standins=()
for d in src/driver_standins/*/; do
  [ -f "$d/package.xml" ] && standins+=("$(basename "$d")")
done
if [ "${#standins[@]}" -gt 0 ]; then
  underlay_only() { # $1: a ':'-separated path list; prints it without entries in this workspace's install/ or build/
    printf '%s' "$1" | tr ':' '\n' | grep -v -e "^$ROOT/install\(/\|$\)" -e "^$ROOT/build\(/\|$\)" | grep -v '^$' | paste -sd: - || true
  }
  mapfile -t found < <(cd / && env PYTHONPATH="$(underlay_only "${PYTHONPATH:-}")" \
    AMENT_PREFIX_PATH="$(underlay_only "${AMENT_PREFIX_PATH:-}")" "$VENV/bin/python" - "${standins[@]}" <<'PY' 2>>"$LOG"
import importlib, os, pathlib, sys
for name in sys.argv[1:]:
    try:
        mod = importlib.import_module(name)
    except Exception:
        continue
    if not getattr(mod, "__file__", None):  # a bare namespace directory, not a package
        continue
    # Another checkout's install/ of these same stand-ins does not count as the real package.
    # (Walk up from the path as imported: a --symlink-install links the module into build/.)
    here = pathlib.Path(os.path.abspath(mod.__file__))
    xml = next((q / "share" / name / "package.xml" for q in here.parents
                if (q / "share" / name / "package.xml").is_file()), None)
    if xml is not None and "TEST STAND-IN" in xml.read_text(errors="replace"):
        continue
    print(name)
PY
  )
  for pkg in "${found[@]}"; do
    step "$pkg: using the installed package, skipping the test stand-in"
    standin_skip+=("$pkg")
    rm -rf "install/$pkg" "build/colcon/$pkg"
  done
fi
skip_args=()
if [ "${#standin_skip[@]}" -gt 0 ]; then
  skip_args=(--packages-skip "${standin_skip[@]}")
fi

src_hash=$(find src colcon.meta -type f \( -name '*.py' -o -name '*.msg' -o -name '*.srv' -o -name '*.action' \
  -o -name '*.txt' -o -name '*.xml' -o -name '*.cfg' -o -name '*.yaml' -o -name '*.meta' -o -name '*.json' \
  -o -path '*/resource/*' \) -print0 2>/dev/null | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
# Which stand-ins are skipped is part of what was built.
build_key="$src_hash${standin_skip[*]:+ skip:${standin_skip[*]}}"
# One colcon worker per core (colcon-cmake adds -jN -lN per package, so the load stays near the
# core count); COLCON_PARALLEL_WORKERS overrides.
workers="${COLCON_PARALLEL_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
if ! stamp_ok build "$build_key" || [ ! -f install/local_setup.bash ]; then
  step "colcon build"
  rm -f "$STAMPS/build"
  colcon --log-base build/colcon-log build --symlink-install --metas colcon.meta \
    --build-base build/colcon --install-base install --parallel-workers "$workers" \
    ${skip_args[@]+"${skip_args[@]}"} \
    --event-handlers console_direct- >>"$LOG" 2>&1 ||
    fail "colcon build (see build/colcon-log/latest_build)" "read the first error in $LOG; fix the package it names"
  stamp_set build "$build_key"
fi
step "ready"
