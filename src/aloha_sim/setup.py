from glob import glob

from setuptools import find_packages, setup

PACKAGE = "aloha_sim"

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
        "A simulated ALOHA (two ViperX 300 arms) in MuJoCo with transfer-cube and "
        "insertion tasks and a scripted bimanual expert, as ROS 2 nodes that behave like "
        "the real robot."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_node = aloha_sim.nodes.sim_node:main",
            "scripted_expert_node = aloha_sim.nodes.scripted_expert_node:main",
        ],
    },
)
