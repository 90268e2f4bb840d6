"""Build script for the ament_python package internvla_ros_common (also installable with plain pip)."""

from setuptools import find_packages, setup

PACKAGE = "internvla_ros_common"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["params/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "README.md"]),
    ],
    install_requires=["setuptools", "PyYAML"],
    zip_safe=False,
    maintainer="internvla_ros maintainers",
    maintainer_email="maintainers@internvla-ros.org",
    description="ROS helpers of internvla_ros: parameter schemas, lifecycle base, node main, QoS, diagnostics.",
    license="MIT",
    entry_points={"console_scripts": ["echo_node = internvla_ros_common.example_node:main"]},
)
