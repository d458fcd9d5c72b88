"""Bounds on configuration read from files: a YAML experiment file, a ``--set`` value, a checkpoint's stored config.

Such a config is data someone else may have written, and ``cpnet predict`` builds a model and its input from a
checkpoint's config. So, before anything is expanded, formatted or allocated:

- YAML is read with a loader that refuses aliases (``*name``: 692 bytes of nested aliases expand to billions of
  values, through a merge key even while the file is being read) and nesting deeper than :data:`MAX_YAML_DEPTH`;
  a config file is at most :data:`MAX_CONFIG_BYTES`.
- The nested mappings are walked within :data:`CONFIG_BOUNDS` (nesting, values, text, integer size;
  :func:`cpnet.models.bounds.check_nested`).
- The numeric fields have upper bounds (:data:`UPPER_BOUNDS`, and :data:`MAX_CLIP_PIXELS` for a clip's frames ×
  side²): generous for any experiment of the paper's kind, far below what would exhaust a machine's memory.

Each refusal is one ValueError naming the file or key and the bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cpnet.models.bounds import NestedBounds, check_nested

__all__ = ["CONFIG_BOUNDS", "MAX_CLIP_PIXELS", "MAX_CONFIG_BYTES", "MAX_YAML_DEPTH", "UPPER_BOUNDS", "check_upper",
           "load_yaml", "read_config_text"]

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: the configs in configs/ are under 1 KB
MAX_YAML_DEPTH = 32  # mappings and lists inside one another while reading YAML (the schema nests 3, options a few)
CONFIG_BOUNDS = NestedBounds(depth=16, values=100_000, text=10_000)

UPPER_BOUNDS: dict[str, int] = {
    "data.num_frames": 1024, "data.stride": 64, "data.size": 1024, "data.short_side": 2048, "data.workers": 256,
    "data.cache_mb": 1 << 20, "data.synthetic.num_train": 1_000_000, "data.synthetic.num_val": 1_000_000,
    "data.synthetic.num_frames": 1024, "data.synthetic.size": 1024, "optim.step_size": 100_000,
    "optim.reference_batch": 1 << 20, "train.epochs": 100_000, "train.batch_size": 4096, "train.accumulate": 4096,
    "train.threads": 1024, "train.val_every": 100_000, "eval.clips": 1000, "eval.batch_size": 4096,
}
# Frames × (the larger of crop size and short side)² of one clip: 2^28 is 64 frames at 2048², 1,024 at 512²; a
# uint8 RGB clip of that many pixels takes 0.8 GB, as float32 3.2 GB.
MAX_CLIP_PIXELS = 1 << 28


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with a nesting limit: the text's size then bounds what it builds."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: an alias (*name); configs may not use YAML aliases, "
                                 "write the value out")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"line {mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep (the limit)")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, what: str) -> Any:
    """The YAML document ``text`` (aliases refused, nesting bounded, then walked within :data:`CONFIG_BOUNDS`);
    ValueError naming ``what``."""
    loader = _NoAliasLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        raise ValueError(f"{what} is not valid YAML: {e}") from None
    except ValueError as e:  # a scalar beyond Python's limits, e.g. an integer of more than 4,300 digits
        raise ValueError(f"{what} is not valid YAML: {e}") from None
    finally:
        loader.dispose()
    check_nested(data, what, CONFIG_BOUNDS)
    return data


def read_config_text(path: Path) -> str:
    """The text of the config file ``path``, refused beyond :data:`MAX_CONFIG_BYTES` before it is read."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"config file {path} is {size:,} bytes, more than the limit of {MAX_CONFIG_BYTES:,}")
    with open(path, encoding="utf-8") as file:
        text = file.read(MAX_CONFIG_BYTES + 1)
    if len(text) > MAX_CONFIG_BYTES:  # it grew since the stat
        raise ValueError(f"config file {path} is more than {MAX_CONFIG_BYTES:,} bytes (the limit)")
    return text


def check_upper(get: Any) -> None:
    """Refuse a numeric field above its :data:`UPPER_BOUNDS` entry, or a clip beyond :data:`MAX_CLIP_PIXELS`;
    ``get(key)`` reads a dotted key of the config."""
    for key, bound in UPPER_BOUNDS.items():
        value = get(key)
        if value is not None and value > bound:
            raise ValueError(f"config key {key!r}: expected a value <= {bound:,}, got {value!r}")
    for prefix in ("data", "data.synthetic"):
        frames, size = get(f"{prefix}.num_frames"), get(f"{prefix}.size")
        side = max(size, get("data.short_side") or size) if prefix == "data" else size
        if frames * side * side > MAX_CLIP_PIXELS:
            raise ValueError(f"config keys '{prefix}.num_frames' and '{prefix}.size'"
                             f"{' / data.short_side' if prefix == 'data' else ''}: a clip of {frames} frames at "
                             f"{side}x{side} is {frames * side * side:,} pixels, more than the limit of "
                             f"{MAX_CLIP_PIXELS:,}")
