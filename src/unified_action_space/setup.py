from glob import glob

from setuptools import find_packages, setup

PACKAGE = "unified_action_space"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/embodiments", glob("config/embodiments/*.yaml")),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Action Diffusion Maintainers",
    maintainer_email="maintainers@action-diffusion.dev",
    description=(
        "RDT's physically interpretable 128-slot unified action space: layout, robot "
        "embodiments, state/command mapping and the unified state node."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "unified_state_node = unified_action_space.nodes.unified_state_node:main",
            "embodiments = unified_action_space.cli:main",
        ],
    },
)
