from glob import glob

from setuptools import find_packages, setup

PACKAGE = "action_diffusion_bringup"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/embodiments", glob("config/embodiments/*.yaml")),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/checkpoints", glob("checkpoints/*.md")),
        # Every shipped checkpoint directory (weights, config, golden chunk).
        *((f"share/{PACKAGE}/{d.rstrip('/')}", glob(f"{d}*")) for d in glob("checkpoints/*/")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Action Diffusion Maintainers",
    maintainer_email="maintainers@action-diffusion.dev",
    description="Launch files and configuration that bring up the action-diffusion suite for the simulated ALOHA and for real dual-arm robots, plus a launch-free runner of the same description.",  # noqa: E501
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "run = action_diffusion_bringup.run:main",
        ],
    },
)
