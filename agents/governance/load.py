"""Reading the governance file: safe YAML, no duplicate keys, one line per failure."""

from pathlib import Path
from typing import Any

import yaml

from aispm_site import hostile

from .schema import GovernanceInvalid

# JSON Schemas in the file nest deeper than agent params may.
GOVERNANCE_MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """Safe YAML that keeps dates as text (they must survive JSON) and refuses
    duplicate keys, which plain YAML silently resolves to the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _value in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_error(source: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if context:
        context_mark = getattr(exc, "context_mark", None)
        if context_mark is not None and (mark is None or context_mark.line != mark.line):
            context += f" started at line {context_mark.line + 1}"
        detail += f" ({context})"
    return f"{where}: invalid YAML: {detail}"


def load_governance_file(path: str | Path) -> Any:
    """Parse the file; raise GovernanceInvalid with one line if it cannot be read."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GovernanceInvalid([f"{source}: no such file"]) from None
    except UnicodeDecodeError:
        raise GovernanceInvalid([f"{source}: not UTF-8 text"]) from None
    except OSError as exc:
        raise GovernanceInvalid([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = hostile.yaml_load(
            text, loader=_Loader, name="the file", max_depth=GOVERNANCE_MAX_DEPTH
        )
    except yaml.YAMLError as exc:
        raise GovernanceInvalid([_yaml_error(source, exc)]) from None
    except hostile.Refused as exc:
        raise GovernanceInvalid([f"{source}: {str(exc).removesuffix('.')}"]) from None
    if data is None:
        raise GovernanceInvalid([f"{source}: the file is empty"])
    return data
