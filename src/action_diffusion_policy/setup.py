from glob import glob

from setuptools import find_packages, setup

PACKAGE = "action_diffusion_policy"

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
        "Diffusion and flow-matching action-chunk policies, training, datasets and bag "
        "tools, plus the policy node, the chunk executor and the recorder."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = action_diffusion_policy.nodes.policy_node:main",
            "action_executor = action_diffusion_policy.nodes.action_executor:main",
            "recorder_node = action_diffusion_policy.nodes.recorder_node:main",
            "bag_player = action_diffusion_policy.nodes.bag_player:main",
            "train = action_diffusion_policy.training.train:main",
            "build_dataset = action_diffusion_policy.data.build_dataset:main",
            "repair_bag = action_diffusion_policy.data.repair_bag:main",
            "lerobot_convert = action_diffusion_policy.data.lerobot:main",
            "evaluate_offline = action_diffusion_policy.evaluation.offline:main",
        ],
    },
)
