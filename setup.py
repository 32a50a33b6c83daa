"""ament_python package owled_ros; also a plain pip-installable package (see README)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "owled_ros"

setup(
    name=package_name,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + package_name + "/models", glob("models/*.md")),
        ("share/" + package_name + "/models/default", glob("models/default/*.json") + glob("models/default/*.safetensors")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="owled_ros developers",
    maintainer_email="dev@owled-ros.invalid",
    description="OWL-pruned driving vision-language model as a ROS 2 node.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "owled = owled_ros.cli:main",
            "owled_node = owled_ros.ros.node:main",
        ],
    },
)
