"""One entry point for every dataset's official annotation files: :func:`load_split`.

Readers live in ``jester``, ``ssv2``, ``kinetics`` and ``generic``; each returns a :class:`DatasetSplit` of
:class:`VideoRecord` with the dataset's own class names and its declared flip pairs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from cpnet.data.generic import load_folder, load_list
from cpnet.data.jester import load_jester
from cpnet.data.kinetics import load_kinetics
from cpnet.data.layout import SPLITS, canonical_split, check_root
from cpnet.data.records import DatasetSplit, VideoRecord
from cpnet.data.ssv2 import load_ssv2

__all__ = ["DATASETS", "SPLITS", "DatasetSplit", "VideoRecord", "load_split"]

DATASETS: dict[str, Callable[[Path, str], DatasetSplit]] = {
    "jester": load_jester,
    "ssv2": load_ssv2,
    "kinetics": load_kinetics,
    "list": load_list,
    "folder": load_folder,
}


def load_split(dataset: str, root: str | Path, split: str, *, warn_missing: bool = True) -> DatasetSplit:
    """Read split ``split`` ('train', 'validation' or 'val', 'test') of ``dataset`` from ``root``.

    Media not found on disk are listed in ``missing`` (and, with ``warn_missing``, reported in one warning with the
    first few ids) rather than raising: real copies of Kinetics are always incomplete. Missing or malformed
    annotation files raise FileNotFoundError / ValueError naming the file.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    split = canonical_split(split)
    result = DATASETS[dataset](check_root(root), split)
    if warn_missing and result.missing:
        warnings.warn(result.missing_summary(), stacklevel=2)
    if result.ignored:
        warnings.warn(result.ignored_summary(), stacklevel=2)
    return result
