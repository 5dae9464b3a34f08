"""Reading a params file safely: bounded size, UTF-8 text, YAML whose aliases cannot expand without bound.

Kept apart from `fakelib.config` (which turns the loaded mapping into validated dataclasses) because it guards
the bytes, not the parameters. Every refusal is a one-line `ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fakelib.checks import ConfigError

# Bounds on a params file: its size, and its values once YAML aliases are expanded.
MAX_PARAMS_BYTES = 1_000_000
MAX_PARAMS_NODES = 100_000


def read_text(path: Path) -> str:
    """The file as UTF-8 text, refusing (one line) what cannot be a params file before parsing it."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PARAMS_BYTES + 1)  # never more than the limit, whatever the file's size
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror or type(error).__name__})") from None
    if len(data) > MAX_PARAMS_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_PARAMS_BYTES} bytes; not a params file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def load_yaml(path: Path, text: str) -> Any:
    """`yaml.safe_load`, refusing documents whose aliases expand past `MAX_PARAMS_NODES` values.

    PyYAML shares aliased nodes, so loading a 436-byte "billion laughs" is fast; what explodes is everything
    after (validation walks and error messages print the expanded structure), hence the bound on the graph.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and expanded_size(node, {}) > MAX_PARAMS_NODES:
            raise ConfigError(f"{path}: aliases expand to more than {MAX_PARAMS_NODES} values; not a params file")
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    finally:
        loader.dispose()


def expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values in `node` with every alias expanded; memoized per node, capped just past the limit."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    sizes[key] = 1  # a recursive alias counts once instead of looping
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [item for pair in node.value for item in pair]
    total = 1
    for child in children:
        total = min(total + expanded_size(child, sizes), MAX_PARAMS_NODES + 1)
    sizes[key] = total
    return total
