"""Build script for the ament_python package internvla_perception (also installable with plain pip)."""

from setuptools import find_packages, setup

PACKAGE = "internvla_perception"


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={"": ["*.json", "*.yaml", "*.txt", "*.xml", "*.jinja", "params/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="internvla_ros maintainers",
    maintainer_email="maintainers@internvla-ros.org",
    description="Grounding node: InternVLA-M1 boxes, points and traces as ROS topics, in 3D and in RViz.",
    license="MIT",
    entry_points={"console_scripts": ["grounding_node = internvla_perception.grounding_node:main"]},
)
