"""Build script for the ament_python package internvla_bringup (also installable with plain pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "internvla_bringup"


def share_tree(root: str) -> list[tuple[str, list[str]]]:
    """Install every file below ``root`` (a shipped model's run directory) keeping the layout."""
    import os

    out = []
    for folder, _dirs, files in sorted(os.walk(root)):
        if files:
            out.append((f"share/{PACKAGE}/{folder}", sorted(os.path.join(folder, f) for f in files)))
    return out


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
        share("launch"),
        share("config"),
        share("config/recording"),
        share("config/calibration"),
        share("rviz"),
        *share_tree("models"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="internvla_ros maintainers",
    maintainer_email="maintainers@internvla-ros.org",
    description="Node-graph descriptions, launch files, configs, RViz config and the in-process runner.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "internvla-run = internvla_bringup.run:main",
            "recorder_node = internvla_bringup.recorder_node:main",
        ]
    },
)
