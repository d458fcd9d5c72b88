"""The TensorFlow checkpoint reader, on checkpoints TensorFlow 2.21 itself wrote (``tests/fixtures/tf_checkpoint``,
made by ``tools/tf_reference/write_checkpoint_fixtures.py``), and on damaged copies of them. No TensorFlow needed."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from cpnet.convert import list_tf_variables, read_tf_checkpoint, resolve_tf_prefix
from cpnet.convert.crc32c import crc32c, mask_crc32c
from cpnet.convert.tf_checkpoint import _read_index, _table
from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "tf_checkpoint"
PREFIXES = {"train": "model.ckpt-2", "sharded": "model.ckpt", "exotic": "model.ckpt", "partitioned": "model.ckpt"}


def fixture_copy(tmp_path: Path, name: str) -> Path:
    """A private copy of a fixture folder; returns its checkpoint prefix."""
    folder = shutil.copytree(FIXTURES / name, tmp_path / name)
    return folder / PREFIXES[name]


def expected(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name / "expected.npz") as npz:
        return {key: npz[key] for key in npz.files}


@pytest.mark.parametrize("name", ["train", "sharded"])
def test_reads_exactly_what_tensorflow_saved(name):
    got = read_tf_checkpoint(FIXTURES / name / PREFIXES[name])
    want = expected(name)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_training_checkpoint_holds_slots_step_and_every_dtype():
    variables = list_tf_variables(FIXTURES / "train")
    assert variables["global_step"] == ("int64", ())
    assert variables["group0/block1/conv1/weights"] == ("float32", (1, 3, 3, 4, 4))
    assert variables["group0/block1/conv1/weights/Momentum"] == ("float32", (1, 3, 3, 4, 4))
    assert variables["extra/empty"] == ("float32", (0, 3))
    assert {dtype for dtype, _ in variables.values()} == {
        "float16", "float32", "float64", "int32", "int64", "uint8", "bool"}
    values = read_tf_checkpoint(FIXTURES / "train")
    assert int(values["global_step"]) == 2
    assert np.abs(values["conv0/weights/Momentum"]).min() > 0  # two momentum steps were taken
    values["conv0/weights"][...] = 0  # arrays are writable (they own their buffer)


def test_sharded_checkpoint_has_two_data_files():
    prefix = FIXTURES / "sharded" / PREFIXES["sharded"]
    assert [p.name for p in sorted(prefix.parent.glob("*.data-*"))] == [
        "model.ckpt.data-00000-of-00002", "model.ckpt.data-00001-of-00002"]
    num_shards, entries = _read_index(prefix)
    assert num_shards == 2 and {e.shard for e in entries.values()} == {0, 1}


@pytest.mark.parametrize("form", ["folder", "prefix", "index", "data"])
def test_prefix_forms(form):
    folder = FIXTURES / "train"
    path = {"folder": folder, "prefix": folder / "model.ckpt-2", "index": folder / "model.ckpt-2.index",
            "data": folder / "model.ckpt-2.data-00000-of-00001"}[form]
    assert resolve_tf_prefix(path) == folder / "model.ckpt-2"
    assert list(read_tf_checkpoint(path, names=["fc/biases"])) == ["fc/biases"]


def test_names_select_and_unknown_names_fail_with_suggestions():
    got = read_tf_checkpoint(FIXTURES / "train", names=["fc/weights", "global_step"])
    assert list(got) == ["fc/weights", "global_step"]
    with pytest.raises(ValueError, match=r"'fc/weight' is not in checkpoint .*close: fc/weights"):
        read_tf_checkpoint(FIXTURES / "train", names=["fc/weight"])


def test_unsupported_dtypes_are_listed_but_refused_by_name():
    prefix = FIXTURES / "exotic" / PREFIXES["exotic"]
    assert list_tf_variables(prefix) == {
        "a/weights": ("float32", (2, 3)), "b/label": ("string", ()), "c/brain": ("bfloat16", (2,))}
    with pytest.raises(ValueError, match=r"'b/label' .* dtype string"):
        read_tf_checkpoint(prefix)
    with pytest.raises(ValueError, match=r"'c/brain' .* dtype bfloat16"):
        read_tf_checkpoint(prefix, names=["c/brain"])
    np.testing.assert_array_equal(read_tf_checkpoint(prefix, names=["a/weights"])["a/weights"],
                                  expected("exotic")["a/weights"])


def test_partitioned_variables_are_listed_whole_and_refused():
    prefix = FIXTURES / "partitioned" / PREFIXES["partitioned"]
    assert list_tf_variables(prefix) == {"a/weights": ("float32", (2, 3)), "embedding": ("float32", (6, 2))}
    with pytest.raises(ValueError, match=r"'embedding' .* partitioned"):
        read_tf_checkpoint(prefix)


def test_truncated_data_file_names_the_variable_and_sizes(tmp_path):
    prefix = fixture_copy(tmp_path, "train")
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    _, entries = _read_index(prefix)
    last = max(entries, key=lambda n: entries[n].offset + entries[n].size)
    end = entries[last].offset + entries[last].size
    with open(data, "r+b") as f:
        f.truncate(end - 1)
    with pytest.raises(ValueError, match=rf"truncated: variable '{last}' needs bytes \d+..{end} .* has {end - 1}"):
        read_tf_checkpoint(prefix)
    read_tf_checkpoint(prefix, names=[n for n in entries if n != last])  # the rest is intact


def test_flipped_byte_fails_the_checksum_of_that_variable(tmp_path):
    prefix = fixture_copy(tmp_path, "train")
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    _, entries = _read_index(prefix)
    raw = bytearray(data.read_bytes())
    raw[entries["group0/block1/conv1/weights"].offset + 5] ^= 0x10
    data.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"checksum mismatch for variable 'group0/block1/conv1/weights'"):
        read_tf_checkpoint(prefix)
    read_tf_checkpoint(prefix, names=["group0/block1/conv1/biases"])


def test_missing_files_are_named(tmp_path):
    prefix = fixture_copy(tmp_path, "sharded")
    (tmp_path / "sharded" / "model.ckpt.data-00001-of-00002").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.ckpt\.data-00001-of-00002"):
        read_tf_checkpoint(prefix)
    prefix.with_name("model.ckpt.index").unlink()
    with pytest.raises(FileNotFoundError, match=r"no TensorFlow checkpoint index at .*sharded/model\.ckpt\.index"):
        list_tf_variables(prefix)
    with pytest.raises(FileNotFoundError, match="without a 'checkpoint' file"):
        read_tf_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello", bytes(100), (FIXTURES / "train" / "expected.npz").read_bytes()])
def test_a_file_that_is_not_a_checkpoint_index(tmp_path, content):
    (tmp_path / "model.index").write_bytes(content)
    with pytest.raises(ValueError, match=r"model\.index is not a TensorFlow checkpoint index"):
        read_tf_checkpoint(tmp_path / "model")


def test_corrupt_index_block_fails_its_checksum(tmp_path):
    prefix = fixture_copy(tmp_path, "train")
    index = prefix.with_name(prefix.name + ".index")
    raw = bytearray(index.read_bytes())
    raw[20] ^= 0x01  # inside the first data block
    index.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="is corrupt .block checksum mismatch"):
        list_tf_variables(prefix)


# A table writer in LevelDB's layout, only to re-block TensorFlow's own index: TensorFlow packs up to 256 KiB per
# block, so the small fixtures have one data block; here the same entries go into blocks of three, with a restart
# point every second key, to exercise the multi-block and restart paths (and, flagged snappy, the refusal).

def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _write_table(path: Path, items: list[tuple[bytes, bytes]], per_block: int = 3, block_type: int = 0) -> None:
    out = bytearray()

    def block(entries: list[tuple[bytes, bytes]], restart_every: int) -> bytes:
        body, restarts, previous = bytearray(), [], b""
        for i, (key, value) in enumerate(entries):
            shared = 0
            if i % restart_every == 0:
                restarts.append(len(body))
            else:
                while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                    shared += 1
            body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
            previous = key
        for r in restarts or [0]:
            body += r.to_bytes(4, "little")
        body += len(restarts or [0]).to_bytes(4, "little")
        handle = _varint(len(out)) + _varint(len(body))
        body.append(block_type)
        out.extend(body + mask_crc32c(crc32c(body)).to_bytes(4, "little"))  # trailer: type byte, masked CRC of both
        return handle

    chunks = [items[i:i + per_block] for i in range(0, len(items), per_block)]
    index = [(chunk[-1][0], block(chunk, 2)) for chunk in chunks]  # the last key of a block bounds it
    handles = block([], 1) + block(index, 1)
    out += handles + bytes(40 - len(handles)) + (0xDB4775248B80FB57).to_bytes(8, "little")
    path.write_bytes(bytes(out))


def test_many_blocks_with_restart_points(tmp_path):
    prefix = fixture_copy(tmp_path, "train")
    index = prefix.with_name(prefix.name + ".index")
    items = list(_table(index))
    _write_table(index, items)
    assert list(_table(index)) == items
    got, want = read_tf_checkpoint(prefix), expected("train")
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)


def test_compressed_blocks_are_refused(tmp_path):
    prefix = fixture_copy(tmp_path, "train")
    index = prefix.with_name(prefix.name + ".index")
    _write_table(index, list(_table(index)), block_type=1)
    with pytest.raises(ValueError, match="snappy-compressed block"):
        read_tf_checkpoint(prefix)
