"""Build script for the ament_python package internvla_sim (also installable with plain pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "internvla_sim"


def share(subdir: str) -> tuple[str, list[str]]:
    """Install every file of a source sub-directory under share/<package>/<subdir>."""
    return (
        f"share/{PACKAGE}/{subdir}",
        sorted(f for f in glob(f"{subdir}/*") if "." in f.rsplit("/", 1)[-1]),
    )


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
    description="MuJoCo Franka and WidowX table-top simulation behind driver-like ROS 2 interfaces.",
    license="MIT",
    entry_points={"console_scripts": ["sim_node = internvla_sim.sim_node:main"]},
)
