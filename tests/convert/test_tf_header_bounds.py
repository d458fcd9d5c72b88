"""A TensorFlow checkpoint whose index lies about a variable (negative offset, a shape of 2^40 elements whose byte
size "matches", sizes beyond int64) is refused before anything is allocated (issue 24, attack 4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpnet.convert import read_tf_checkpoint
from cpnet.convert.tf_checkpoint import _table
from tests.convert.test_tf_checkpoint import _varint, _write_table, fixture_copy

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _int64(value: int) -> bytes:
    return _varint(value % (1 << 64))  # protobuf's int64: two's complement as a 10-byte varint when negative


def _entry(shape: tuple[int, ...], offset: int, size: int, dtype: int = 1) -> bytes:
    """A BundleEntryProto: dtype, shape, shard 0, offset, size, crc 0."""
    dims = b"".join(_field(2, 2, _varint(len(d)) + d) for d in (_field(1, 0, _int64(n)) for n in shape))
    return (_field(1, 0, _varint(dtype)) + _field(2, 2, _varint(len(dims)) + dims) + _field(3, 0, _varint(0))
            + _field(4, 0, _int64(offset)) + _field(5, 0, _int64(size)) + _field(6, 5, bytes(4)))


def _lying(tmp_path: Path, shape: tuple[int, ...], offset: int, size: int) -> tuple[Path, str]:
    """The 'train' fixture with its first variable's entry replaced; (prefix, that variable's name)."""
    prefix = fixture_copy(tmp_path, "train")
    index = prefix.with_name(prefix.name + ".index")
    items = list(_table(index))
    key = items[1][0]
    items[1] = (key, _entry(shape, offset, size))
    _write_table(index, items)
    return prefix, key.decode()


def test_a_negative_offset_with_a_huge_matching_size_is_refused_before_allocating(tmp_path: Path) -> None:
    size = 4 << 40  # 2^40 float32 elements: 4 TiB
    prefix, name = _lying(tmp_path, (1 << 40,), -size, size)  # offset + size = 0: inside any file
    with pytest.raises(ValueError, match=rf"^variable '{name}' in {prefix}: offset -[\d,]+ is negative$"):
        read_tf_checkpoint(prefix, names=[name])


def test_a_size_beyond_the_data_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    prefix, name = _lying(tmp_path, (1 << 40,), 0, 4 << 40)
    data = next(prefix.parent.glob(prefix.name + ".data-*"))
    with pytest.raises(ValueError, match=rf"^{data} is truncated: variable '{name}' needs bytes 0\.\.\d+ but the "
                                         rf"file has {os.path.getsize(data)} bytes$"):
        read_tf_checkpoint(prefix, names=[name])


def test_an_element_count_that_overflows_int64_does_not_match_a_small_size(tmp_path: Path) -> None:
    # 2^32 · 2^32 · 16 elements: the product wraps to 0 in int64, which "matched" a size of 0 bytes.
    prefix, name = _lying(tmp_path, (1 << 32, 1 << 32, 16), 0, 0)
    with pytest.raises(ValueError, match=rf"^variable '{name}' in {prefix}: 0 bytes stored for shape "
                                         r"\(4294967296, 4294967296, 16\) of float32 \([\d,]+ expected\)$"):
        read_tf_checkpoint(prefix, names=[name])


def test_a_negative_size_is_refused(tmp_path: Path) -> None:
    prefix, name = _lying(tmp_path, (0,), 0, -8)
    with pytest.raises(ValueError, match=rf"^variable '{name}' in {prefix}: -8 bytes stored"):
        read_tf_checkpoint(prefix, names=[name])


def test_a_shape_of_too_many_dimensions_is_refused(tmp_path: Path) -> None:
    prefix, name = _lying(tmp_path, (1,) * 300, 0, 4)
    with pytest.raises(ValueError, match=rf"^variable '{name}' in {prefix}: a shape of 300 dimensions, more than "
                                         "the limit of 64$"):
        read_tf_checkpoint(prefix, names=[name])
