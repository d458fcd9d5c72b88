"""Data: annotation readers, media decoding, clip sampling, transforms and the synthetic motion dataset.

- ``annotations.load_split(dataset, root, split)`` reads Jester, Something-Something v2, Kinetics-400 or a generic
  list / class-per-folder tree into a ``DatasetSplit`` of ``VideoRecord`` (``records``).
- ``video.read_clip`` / ``count_frames`` / ``probe`` decode videos (PyAV) and frame folders (Pillow, ``frames``).
- ``sampling``: which frames a clip takes (dense or segment); ``views``: the test-time protocols, where their
  clips and crops sit.
- ``transforms``: per-clip augmentation on uint8 (T, H, W, 3) -> float (3, T, H, W), flip label swapping.
- ``dataset.ClipDataset`` / ``ViewDataset`` / ``collate_skip`` / ``collate_views``: the torch Datasets training and
  evaluation use, and the typed batches (:mod:`cpnet.batch`) they collate into.
- ``synthetic``: the time-reversal-paired motion set (``SyntheticMotion``, ``write_jester``).
- ``commands``: what ``cpnet data check`` does.

Errors name the offending file (and line or entry): absent files raise FileNotFoundError; malformed annotation
files ValueError (wrong separator or header, unknown class, duplicate id, undecodable text), an annotation file
listing no video ``EmptySplitError``; media that exist but do not decode ``MediaError`` (both ValueErrors).
"""
