"""Size bounds for models built from options that may come from a file (a config, a checkpoint's ``model.options``).

A checkpoint names its model by preset and options, so ``width=10**6`` or ``num_classes=10**9`` in one would make
the loading process try to allocate terabytes. :func:`cpnet.models.create_model` therefore counts the parameters of
the model it is asked for on PyTorch's meta device (shapes only, no storage: milliseconds) and refuses one above
:func:`max_params` with a ValueError naming the options, before anything is allocated. ``VideoResNet`` also refuses
more than :data:`MAX_BLOCKS` residual blocks, as the count itself builds every block's modules.

Options are data from a file too, so before they are formatted into a message or expanded they are bounded by
:func:`check_nested`: nesting, the count of values (shared references counted each time they are reached, as a
``repr`` or a copy would), text length and integer size. A checkpoint whose options nest shared lists nine levels
deep is a few hundred KB on disk and tens of GB as text.

The limit is the operator's, not the file's: only the environment variable ``CPNET_MAX_PARAMS`` raises (or lowers)
it, so no config or checkpoint option can lift it.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

import torch
import torch.nn as nn

from cpnet.models.params import count_params

__all__ = ["MAX_BLOCKS", "MAX_OPTIONS", "MAX_PARAMS", "OPTION_BOUNDS", "PARAMS_ENV", "NestedBounds", "brief",
           "check_nested", "max_params", "params_on_meta"]

MAX_PARAMS = 2**30  # 1,073,741,824 parameters (4 GiB in float32): 24× the largest preset, cpnet_r101's 44.3 M
MAX_BLOCKS = 1000  # residual blocks over the four stages: 30× the deepest preset (R101, 33 blocks)
PARAMS_ENV = "CPNET_MAX_PARAMS"
MAX_OPTIONS = 64  # keyword overrides of one preset (the presets take about 20)


class NestedBounds(tuple):
    """(nesting, values, text, integer bits): the most mappings and lists inside one another, values reached in
    all (shared references counted each time), characters (or bytes) of one text and bits of one integer."""

    def __new__(cls, depth: int, values: int, text: int, int_bits: int = 1024) -> NestedBounds:
        return super().__new__(cls, (depth, values, text, int_bits))


# Model options: cp_at={"layer2": [2, 3]} nests two deep; a preset takes about 20 options of a few values each.
OPTION_BOUNDS = NestedBounds(depth=8, values=10_000, text=1_000)


class _Brief(reprlib.Repr):
    """``reprlib``'s bounded repr, with mappings in their own order (reprlib sorts their keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple, self.maxstring, self.maxother = 3, 24, 8, 8, 80, 80

    def repr_dict(self, x: dict, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in islice(x.items(), self.maxdict)]
        return "{" + ", ".join(items) + (", ...}" if len(x) > self.maxdict else "}")


_BRIEF = _Brief()


def brief(value: Any) -> str:
    """``repr(value)`` cut short (nesting, items, text; at most 300 characters): what a message shows of a value
    that came from a file."""
    text = _BRIEF.repr(value)
    return text if len(text) <= 300 else text[:299] + "…"


def check_nested(value: Any, what: str, bounds: NestedBounds) -> None:
    """Refuse ``value`` (data read from a file: mappings, lists, tuples, scalars) beyond ``bounds``, with a
    one-line ValueError naming where in ``what`` it goes beyond which bound. The walk stops at the first value
    over a bound, so it costs at most ``bounds`` values however much the references would expand."""
    depth_bound, value_bound, text_bound, bit_bound = bounds
    stack: list[tuple[Any, int, str]] = [(value, 0, what)]
    seen = 0
    while stack:
        item, depth, where = stack.pop()
        seen += 1
        if seen > value_bound:
            raise ValueError(f"{what} holds more than {value_bound:,} values (repeated references counted each "
                             "time); refused before it is expanded")
        if isinstance(item, (str, bytes)):
            if len(item) > text_bound:
                raise ValueError(f"{where}: a text of {len(item):,} characters, more than the limit of {text_bound:,}")
        elif isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > bit_bound:
                raise ValueError(f"{where}: an integer of {item.bit_length():,} bits, more than the limit of "
                                 f"{bit_bound}")
        elif isinstance(item, (Mapping, list, tuple, set, frozenset)):
            if depth >= depth_bound:
                raise ValueError(f"{where}: nested more than {depth_bound} levels deep (the limit)")
            if len(item) > value_bound - seen - len(stack):
                raise ValueError(f"{what} holds more than {value_bound:,} values (repeated references counted "
                                 "each time); refused before it is expanded")
            pairs = item.items() if isinstance(item, Mapping) else enumerate(item)
            for key, child in pairs:
                name = key if isinstance(key, str) and len(key) <= 64 and key.isidentifier() else None
                small = isinstance(key, int) and not isinstance(key, bool) and key.bit_length() <= bit_bound
                inner = f"{where}.{name}" if name else f"{where}[{key if small else '…'}]"
                if isinstance(item, Mapping):
                    stack.append((key, depth + 1, f"{where} (a key)"))
                stack.append((child, depth + 1, inner))


def max_params() -> int:
    """The largest parameter count ``create_model`` builds: ``$CPNET_MAX_PARAMS`` when set, else :data:`MAX_PARAMS`."""
    raw = os.environ.get(PARAMS_ENV, "").strip()
    if not raw:
        return MAX_PARAMS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{PARAMS_ENV} must be a positive integer (a parameter count), got {raw!r}")
    return value


def params_on_meta(build: Callable[[], nn.Module], what: str = "the model") -> int:
    """Parameters of the model ``build()`` makes, counted on the meta device (no storage is allocated).

    A model too large for PyTorch to even lay out (a tensor size overflowing int64) is a ValueError naming ``what``.
    """
    try:
        with torch.device("meta"):
            model = build()
    except (RuntimeError, OverflowError) as err:
        raise ValueError(f"{what} cannot be laid out: {err}") from err
    return count_params(model)
