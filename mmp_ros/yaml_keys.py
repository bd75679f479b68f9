"""Keys given twice in one YAML mapping: PyYAML keeps the last value without a word, so a
second ``faults:`` block of a dropout schedule, or a second ``optim:`` section of a training
config, silently dropped the first."""

from __future__ import annotations

import yaml


def key_given_twice(node: yaml.Node | None) -> tuple[str, int, int] | None:
    """The first key given twice in one mapping of ``node`` (a document composed by
    ``yaml.compose``), as (key, line of its first, line of its second; counted from 1); None
    where there is none. A merge key (``<<: *defaults``), whose keys the mapping's own
    override, is no repetition."""
    seen_nodes: set[int] = set()
    pending = [node]
    while pending:
        node = pending.pop(0)
        if id(node) in seen_nodes:  # an alias of a node already looked at
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            pending += node.value
        elif isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != 'tag:yaml.org,2002:merge':
                    line = key.start_mark.line + 1
                    if key.value in lines:
                        return key.value, lines[key.value], line
                    lines[key.value] = line
                pending.append(value)
    return None
