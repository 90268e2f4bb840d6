"""Build script for the ament_python package internvla_policy (also installable with plain pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "internvla_policy"


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
        share("config"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="internvla_ros maintainers",
    maintainer_email="maintainers@internvla-ros.org",
    description="Policy action server and chunk executor for InternVLA-M1.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "policy_node = internvla_policy.policy_node:main",
            "chunk_executor = internvla_policy.chunk_executor_node:main",
            "gripper_bridge = internvla_policy.gripper_bridge_node:main",
        ]
    },
)
