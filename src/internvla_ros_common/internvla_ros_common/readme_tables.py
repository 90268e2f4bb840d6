"""README parameter tables generated from a schema, and the check that a README has not drifted.

A README holds one block per node between ``<!-- params:<node_name> begin -->`` and
``<!-- params:<node_name> end -->``; ``python -m internvla_ros_common.schema readme`` rewrites it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from internvla_ros_common.validators import format_value

if TYPE_CHECKING:
    from internvla_ros_common.schema import NodeSchema


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(schema: NodeSchema) -> str:
    """The README table of a node's parameters, one row per leaf in file order."""
    rows = [
        "| Parameter | Type | Default | Description | Constraints |",
        "|---|---|---|---|---|",
    ]
    for spec in schema.parameters.values():
        default = "" if spec.required or spec.type == "none" else f"`{_cell(format_value(spec.default))}`"
        rows.append(
            f"| `{spec.name}` | {spec.type} | {default} | {_cell(spec.description)} | {_cell(spec.constraints_text())} |"
        )
    return "\n".join(rows) + "\n"


def _markers(node_name: str) -> tuple[str, str]:
    return f"<!-- params:{node_name} begin -->", f"<!-- params:{node_name} end -->"


def _block_pattern(node_name: str) -> re.Pattern[str]:
    begin, end = _markers(node_name)
    return re.compile(re.escape(begin) + r"\n(.*?)" + re.escape(end), re.DOTALL)


def _generated_block(schema: NodeSchema) -> str:
    begin, end = _markers(schema.node_name)
    return f"{begin}\n<!-- generated from {Path(schema.source).name} by `python -m internvla_ros_common.schema readme`; do not edit -->\n{markdown_table(schema)}{end}"


def update_readme(readme_path: str | Path, schema: NodeSchema) -> bool:
    """Rewrite the node's block in the README (appended under a heading when the markers are
    missing). Returns True when the file changed."""
    path = Path(readme_path)
    text = path.read_text()
    block = _generated_block(schema)
    pattern = _block_pattern(schema.node_name)
    if pattern.search(text):
        new = pattern.sub(lambda _: block, text, count=1)
    else:
        new = text.rstrip("\n") + f"\n\n### `{schema.node_name}` parameters\n\n{block}\n"
    if new != text:
        path.write_text(new)
    return new != text


def readme_drift(readme_path: str | Path, schema: NodeSchema) -> str | None:
    """None when the README's block equals what the schema generates; else what to run."""
    path = Path(readme_path)
    fix = f"run: python -m internvla_ros_common.schema readme {path} {schema.source}"
    match = _block_pattern(schema.node_name).search(path.read_text())
    if match is None:
        begin, end = _markers(schema.node_name)
        return f"{path}: no parameter block for {schema.node_name} (markers {begin} ... {end}); {fix}"
    if match.group(0) == _generated_block(schema):
        return None
    diff = difflib.unified_diff(
        match.group(0).splitlines(),
        _generated_block(schema).splitlines(),
        "README",
        "schema",
        lineterm="",
        n=0,
    )
    return (
        f"{path}: the parameter table of {schema.node_name} differs from {schema.source}; {fix}\n"
        + "\n".join(diff)
    )
