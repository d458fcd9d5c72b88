"""Read TensorFlow checkpoints (the TensorBundle format of ``tf.train.Saver`` V2 and later) without TensorFlow.

A checkpoint ``PREFIX`` is two or more files:

- ``PREFIX.index``: a sorted string table in LevelDB's layout (data blocks of prefix-compressed keys with restart
  points, each block followed by a type byte and a masked CRC-32C; an index block of block handles; a 48-byte
  footer ending in a magic number). Its values are protobufs: under the empty key a ``BundleHeaderProto``
  (number of shards, endianness, format version), under each variable's name a ``BundleEntryProto`` (dtype,
  shape, shard, offset, size, masked CRC-32C of the bytes).
- ``PREFIX.data-0000i-of-0000n``: the raw little-endian tensor bytes, C order, one file per shard.

TensorFlow writes the index uncompressed (snappy blocks are refused with a clear error), and the few protobuf
fields are decoded by hand, so reading needs numpy only. Every tensor's checksum is verified. Numeric and bool
dtypes are read; strings, variants, resources, bfloat16 and partitioned (sliced) variables are listed by
:func:`list_tf_variables` but refused by :func:`read_tf_checkpoint`.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cpnet.convert.crc32c import crc32c, mask_crc32c

__all__ = ["list_tf_variables", "read_tf_checkpoint", "resolve_tf_prefix"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48  # two block handles padded to 40 bytes, then the 8-byte magic
_BLOCK_TRAILER_BYTES = 5  # compression type byte + masked CRC-32C of the block and that byte
_FORMAT_VERSION = 1  # the TensorBundle version this reader understands
MAX_RANK = 64  # dimensions of one variable (TensorFlow's own limit is 254; its models use up to 5)

# TensorFlow DataType enum (types.proto) -> (name, numpy dtype or None when numpy cannot hold it).
_DTYPES: dict[int, tuple[str, str | None]] = {
    1: ("float32", "<f4"), 2: ("float64", "<f8"), 3: ("int32", "<i4"), 4: ("uint8", "u1"), 5: ("int16", "<i2"),
    6: ("int8", "i1"), 7: ("string", None), 8: ("complex64", "<c8"), 9: ("int64", "<i8"), 10: ("bool", "?"),
    11: ("qint8", None), 12: ("quint8", None), 13: ("qint32", None), 14: ("bfloat16", None), 15: ("qint16", None),
    16: ("quint16", None), 17: ("uint16", "<u2"), 18: ("complex128", "<c16"), 19: ("float16", "<f2"),
    20: ("resource", None), 21: ("variant", None), 22: ("uint32", "<u4"), 23: ("uint64", "<u8"),
}


@dataclass(frozen=True)
class _Entry:
    """One ``BundleEntryProto``: where a variable's bytes are and what they hold."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    masked_crc: int
    sliced: bool

    @property
    def dtype_name(self) -> str:
        return _DTYPES.get(self.dtype, (f"DataType {self.dtype}", None))[0]


# ---------------------------------------------------------------- protobuf wire format


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError(f"{where} is corrupt (a varint runs past its end)")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes, where: str) -> dict[int, list[int | bytes]]:
    """Split a serialised protobuf message into field number -> values (ints, or bytes when length-delimited)."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire in (1, 5):  # fixed64, fixed32
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise ValueError(f"{where} is corrupt (protobuf wire type {wire})")
        if pos > len(buf):
            raise ValueError(f"{where} is corrupt (a protobuf field runs past its end)")
        fields.setdefault(number, []).append(value)
    return fields


def _scalar(fields: dict[int, list[int | bytes]], number: int) -> int:
    """The last value of an integer field (protobuf's rule for repeated scalars), 0 when absent."""
    value = fields.get(number, [0])[-1]
    assert isinstance(value, int)
    return value - (1 << 64) if value >= 1 << 63 else value  # int64 fields are two's complement varints


def _parse_entry(value: bytes, where: str) -> _Entry:
    fields = _proto_fields(value, where)
    shape = []
    for shape_proto in fields.get(2, []):  # TensorShapeProto: repeated Dim dim = 2, each Dim: int64 size = 1
        assert isinstance(shape_proto, bytes)
        for dim in _proto_fields(shape_proto, where).get(2, []):
            assert isinstance(dim, bytes)
            shape.append(_scalar(_proto_fields(dim, where), 1))
    return _Entry(dtype=_scalar(fields, 1), shape=tuple(shape), shard=_scalar(fields, 3), offset=_scalar(fields, 4),
                  size=_scalar(fields, 5), masked_crc=_scalar(fields, 6), sliced=7 in fields)


# ---------------------------------------------------------------- sorted string table (the .index file)


def _block(data: bytes, handle: bytes, path: Path, skip: int = 0) -> bytes:
    """The contents of the block a handle (varint offset, varint size; after ``skip`` varints) points to, its
    checksum verified."""
    pos = 0
    for _ in range(skip):
        _, pos = _varint(handle, pos, str(path))
    offset, pos = _varint(handle, pos, str(path))
    size, _ = _varint(handle, pos, str(path))
    end = offset + size
    if end + _BLOCK_TRAILER_BYTES > len(data):
        raise ValueError(f"{path} is truncated (a block ends at byte {end + _BLOCK_TRAILER_BYTES}, "
                         f"the file has {len(data)})")
    kind = data[end]
    if kind != 0:
        name = {1: "snappy"}.get(kind, f"unknown type {kind}")
        raise ValueError(f"{path} has a {name}-compressed block; TensorFlow writes checkpoint indexes uncompressed "
                         "and this reader does not decompress")
    stored = int.from_bytes(data[end + 1:end + _BLOCK_TRAILER_BYTES], "little")
    if mask_crc32c(crc32c(data[offset:end + 1])) != stored:
        raise ValueError(f"{path} is corrupt (block checksum mismatch at byte {offset})")
    return data[offset:end]


def _block_entries(block: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of a block. Each key stores only its suffix after the part shared with the previous key;
    the restart array at the end (offsets of entries with nothing shared) serves seeks, which a full scan skips."""
    where = str(path)
    if len(block) < 4:
        raise ValueError(f"{path} is corrupt (a block of {len(block)} bytes)")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 * (1 + num_restarts)
    if limit < 0:
        raise ValueError(f"{path} is corrupt (a block claims {num_restarts} restart points)")
    key, pos = b"", 0
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        unshared, pos = _varint(block, pos, where)
        value_len, pos = _varint(block, pos, where)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise ValueError(f"{path} is corrupt (a bad entry in a block)")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _table(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-layout table file, in key order."""
    data = path.read_bytes()
    footer = data[-_FOOTER_BYTES:]
    if len(footer) < _FOOTER_BYTES or int.from_bytes(footer[-8:], "little") != _TABLE_MAGIC:
        raise ValueError(f"{path} is not a TensorFlow checkpoint index (no table magic number at its end)")
    index = _block(data, footer, path, skip=2)  # after the metaindex handle (no filter blocks in TensorFlow's)
    for _, handle in _block_entries(index, path):  # index entries: separator key -> data block handle
        yield from _block_entries(_block(data, handle, path), path)


# ---------------------------------------------------------------- the bundle


def resolve_tf_prefix(path: str | Path) -> Path:
    """The checkpoint prefix for ``path``: a prefix, its ``.index`` or ``.data-*`` file, or a directory whose
    ``checkpoint`` file names the latest checkpoint (as ``tf.train.latest_checkpoint`` reads it)."""
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if not state.is_file():
            raise FileNotFoundError(f"{path} is a directory without a 'checkpoint' file; pass a checkpoint prefix "
                                    "(the path of the .index file without '.index')")
        match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', state.read_text(), re.MULTILINE)
        if match is None:
            raise ValueError(f"{state} names no model_checkpoint_path")
        latest = Path(match.group(1))
        return latest if latest.is_absolute() else path / latest
    name = re.sub(r"\.(index|data-\d{5}-of-\d{5})$", "", path.name)
    return path.with_name(name)


def _read_index(prefix: Path) -> tuple[int, dict[str, _Entry]]:
    """(number of shards, name -> entry) from ``PREFIX.index``; checks the header."""
    index_path = Path(f"{prefix}.index")
    if not index_path.is_file():
        raise FileNotFoundError(f"no TensorFlow checkpoint index at {index_path}")
    items = iter(_table(index_path))
    first = next(items, None)
    if first is None or first[0] != b"":
        raise ValueError(f"{index_path} is not a TensorFlow checkpoint index (no bundle header entry)")
    header = _proto_fields(first[1], str(index_path))
    num_shards, endianness = _scalar(header, 1), _scalar(header, 2)
    version = _proto_fields(header.get(3, [b""])[-1], str(index_path))  # VersionDef: producer 1, min_consumer 2
    if endianness != 0:
        raise ValueError(f"{index_path} was written on a big-endian machine; this reader reads little-endian only")
    if _scalar(version, 2) > _FORMAT_VERSION or _FORMAT_VERSION in version.get(3, []):
        raise ValueError(f"{index_path} needs a newer reader (bundle format {_scalar(version, 1)}, min consumer "
                         f"{_scalar(version, 2)}; this reader knows format {_FORMAT_VERSION})")
    entries = {}
    for key, value in items:
        if key.startswith(b"\0"):
            continue  # one slice of a partitioned variable (name and extents order-encoded); its full entry follows
        entries[key.decode("utf-8", "backslashreplace")] = _parse_entry(value, f"{index_path} entry {key!r}")
    return num_shards, entries


def list_tf_variables(prefix: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype name, shape) of every variable in a checkpoint, read from the ``.index`` file only.

    ``prefix`` is as :func:`resolve_tf_prefix` takes it. Dtype names are TensorFlow's (``float32``, ``int64``,
    ``bfloat16``, ``string``...).
    """
    _, entries = _read_index(resolve_tf_prefix(prefix))
    return {name: (entry.dtype_name, entry.shape) for name, entry in entries.items()}


def _check_entry(name: str, entry: _Entry, num_shards: int, prefix: Path) -> np.dtype:
    """The numpy dtype of a variable; ValueError naming it if it cannot be read. The header is a claim: before
    anything is allocated its offset must be >= 0, its rank at most ``MAX_RANK`` and its byte size exactly the
    element count (exact, in Python integers) times the dtype's size; _check_data_file then bounds offset + size
    by the data file's size."""
    if entry.sliced:
        raise ValueError(f"variable {name!r} in {prefix} is partitioned (saved in slices); not supported")
    dtype = _DTYPES.get(entry.dtype, (None, None))[1]
    if dtype is None:
        raise ValueError(f"variable {name!r} in {prefix} has dtype {entry.dtype_name}, which this reader does not "
                         "read (numeric and bool only); pass names= to read the others")
    if not 0 <= entry.shard < num_shards:
        raise ValueError(f"variable {name!r} in {prefix} is in shard {entry.shard}, the header says {num_shards}")
    dtype = np.dtype(dtype)
    where = f"variable {name!r} in {prefix}"
    if len(entry.shape) > MAX_RANK:
        raise ValueError(f"{where}: a shape of {len(entry.shape)} dimensions, more than the limit of {MAX_RANK}")
    if entry.offset < 0:
        raise ValueError(f"{where}: offset {entry.offset:,} is negative")
    expected = dtype.itemsize * math.prod(entry.shape)  # Python integers: no int64 wrap-around to a small size
    if any(d < 0 for d in entry.shape) or entry.size != expected:
        raise ValueError(f"{where}: {entry.size:,} bytes stored for shape {entry.shape} of {entry.dtype_name} "
                         f"({expected:,} expected)")
    return dtype


def _select(entries: dict[str, _Entry], names: Iterable[str] | None, prefix: Path) -> list[str]:
    if names is None:
        return list(entries)
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if name not in entries:
            close = difflib.get_close_matches(name, list(entries), n=3)
            hint = f"; close: {', '.join(close)}" if close else ""
            raise ValueError(f"variable {name!r} is not in checkpoint {prefix} ({len(entries)} variables{hint})")
    return wanted


def read_tf_checkpoint(prefix: str | Path, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Name -> array of the variables of a TensorFlow checkpoint (all of them, or those in ``names``).

    ``prefix`` is as :func:`resolve_tf_prefix` takes it (``model.ckpt-1000``, its ``.index`` file, or the
    directory). Arrays have TensorFlow's layout and dtype, and are writable. Raises FileNotFoundError for a missing
    ``.index`` or ``.data`` file (naming it) and ValueError for anything that cannot be read as stored: a file
    that is not a checkpoint, a truncated ``.data`` file or a checksum mismatch (naming the variable), a dtype
    numpy cannot hold.
    """
    prefix = resolve_tf_prefix(prefix)
    num_shards, entries = _read_index(prefix)
    selected = _select(entries, names, prefix)
    dtypes = {name: _check_entry(name, entries[name], num_shards, prefix) for name in selected}
    by_shard: dict[int, list[str]] = {}
    for name in sorted(selected, key=lambda n: entries[n].offset):  # file order: one forward pass per shard
        by_shard.setdefault(entries[name].shard, []).append(name)
    data_paths = {shard: _check_data_file(prefix, shard, num_shards, shard_names, entries)
                  for shard, shard_names in by_shard.items()}  # before reading anything: fail fast on a truncated copy
    out: dict[str, np.ndarray] = {}
    for shard, shard_names in sorted(by_shard.items()):
        with open(data_paths[shard], "rb") as f:
            for name in shard_names:
                out[name] = _read_tensor(f, name, entries[name], dtypes[name], data_paths[shard])
    return {name: out[name] for name in selected}


def _check_data_file(prefix: Path, shard: int, num_shards: int, names: list[str], entries: dict[str, _Entry]) -> Path:
    """The path of a shard's data file, checked to exist and to hold every byte of ``names`` (in file order)."""
    data_path = Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")
    if not data_path.is_file():
        raise FileNotFoundError(f"missing checkpoint data file {data_path}")
    file_size = os.path.getsize(data_path)
    for name in names:
        offset, size = entries[name].offset, entries[name].size
        if offset < 0 or size < 0:  # _check_entry refuses both first; kept here as this function's own bound
            raise ValueError(f"variable {name!r} in {data_path}: offset {offset:,} and size {size:,} must be >= 0")
        if offset + size > file_size:
            raise ValueError(f"{data_path} is truncated: variable {name!r} needs bytes {offset}..{offset + size} "
                             f"but the file has {file_size} bytes")
    return data_path


def _read_tensor(f: BinaryIO, name: str, entry: _Entry, dtype: np.dtype, data_path: Path) -> np.ndarray:
    """Read, checksum and shape one variable's bytes from the open data file ``f``."""
    buf = bytearray(entry.size)
    f.seek(entry.offset)
    if f.readinto(buf) != entry.size:
        raise ValueError(f"{data_path} is truncated: variable {name!r} could not be read in full")
    if mask_crc32c(crc32c(buf)) != entry.masked_crc:
        raise ValueError(f"checksum mismatch for variable {name!r} in {data_path}: the file is corrupt")
    return np.frombuffer(buf, dtype=dtype).reshape(entry.shape)
