"""CRC-32C: published check values, a bit-by-bit oracle, and the lane-parallel path against the byte loop."""

import numpy as np
import pytest

from cpnet.convert import crc32c as crc_module
from cpnet.convert.crc32c import crc32c, mask_crc32c


def bitwise_crc32c(data: bytes) -> int:
    """The definition, one bit at a time (reflected Castagnoli polynomial, all-ones start and final XOR)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("data, expected", [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),  # the CRC catalogue's check value
    (bytes(32), 0x8A9136AA),  # RFC 3720 B.4
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_published_values(data, expected):
    assert crc32c(data) == expected


@pytest.mark.parametrize("size", [1, 3, 255, 256, 257, 1023, 4096 + 5, 65536 + 7])
def test_matches_the_bitwise_definition(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == bitwise_crc32c(data)


@pytest.mark.parametrize("size", [300, 10_000, 1_000_003, 9_437_184])
def test_lanes_agree_with_the_byte_loop(size, monkeypatch):
    """Sizes that take 2^15 lanes, then shorter tails; the byte loop alone is the reference."""
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    fast = crc32c(data)
    monkeypatch.setattr(crc_module, "_MIN_VECTOR_BYTES", size + 1)
    assert fast == crc32c(data)


def test_continues_from_a_previous_value_and_takes_arrays():
    x = np.random.default_rng(1).standard_normal((17, 33)).astype(np.float32)
    whole = crc32c(x.tobytes())
    assert crc32c(x) == whole
    assert crc32c(x[9:], crc32c(x[:9])) == whole
    assert crc32c(np.asfortranarray(x)) == whole  # an array counts as its bytes in C order, like tobytes()


def test_mask():
    assert mask_crc32c(0) == 0xA282EAD8
    assert mask_crc32c(0xE3069283) == ((0xE3069283 >> 15 | 0xE3069283 << 17) + 0xA282EAD8) % 2**32
