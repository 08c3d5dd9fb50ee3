"""YAML from others (sweep files, a copied sweep dir's .hydra/*.yaml) read as plain data at a bounded cost:
`yaml.safe_load` builds no objects, but an alias repeats a node by reference, so a few lines of anchors and
aliases stand for billions of values once anything walks them ("billion laughs"). Plain YAML has none, so
anchors and aliases are refused; the caller caps the text's size."""

from __future__ import annotations

from typing import Any

import yaml


class _PlainLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&, *) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def load_plain_yaml(text: str | bytes) -> Any:
    """The data in `text`; `ValueError` (saying where) for invalid YAML, anchors, aliases, or nesting too deep."""
    try:
        return yaml.load(text, Loader=_PlainLoader)  # a SafeLoader that also refuses aliases
    except yaml.YAMLError as error:
        raise ValueError(f"not valid plain YAML ({error})") from error
    except RecursionError as error:
        raise ValueError("not valid plain YAML (nested too deep)") from error
