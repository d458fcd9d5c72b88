"""CRC-32C (Castagnoli), the checksum of TensorFlow's checkpoint files, in numpy.

The standard library has no CRC-32C (``zlib.crc32`` uses another polynomial), and a byte-at-a-time table loop in
Python runs at a few MB/s: half a minute for a ResNet-34 checkpoint with its momentum slots. So long inputs are cut
into many lanes of equal length whose registers advance together, one 32-bit word per numpy step, and the lanes are
then merged pairwise. Merging rests on CRC being linear over GF(2): the register after A‖B is the register after A
carried through len(B) zero bytes, XOR the register after B started from zero. Carrying a register through 2^j zero
bytes is a fixed 32×32 bit matrix, built by squaring and cached as four 256-entry byte tables.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["crc32c", "mask_crc32c"]

_POLY = 0x82F63B78  # the Castagnoli polynomial, bit-reflected
_MAX_LANES = 1 << 15  # registers advanced per numpy step (measured best of 2^12..2^16 on a 9 MB tensor)
_MIN_LANE_WORDS = 16  # shorter lanes spend more on merging than they save
_MIN_VECTOR_BYTES = 256  # below this the plain byte loop is as fast


def _byte_table() -> np.ndarray:
    """T0[b]: the register contribution of byte b (the classic one-byte table), as uint32."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    return t


def _word_tables(t0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tables that advance a register by one little-endian 32-bit word in two look-ups (slicing-by-4, paired).

    Tk[b] is byte b followed by k zero bytes. For x = register ^ word, the new register is
    T3[byte0] ^ T2[byte1] ^ T1[byte2] ^ T0[byte3]; the low and high 16 bits each index one 65536-entry table.
    """
    tables = [t0]
    for _ in range(3):
        prev = tables[-1]
        tables.append((prev >> 8) ^ t0[prev & 0xFF])
    t0, t1, t2, t3 = tables
    low = (t2[:, None] ^ t3[None, :]).ravel()  # index byte1 * 256 + byte0
    high = (t0[:, None] ^ t1[None, :]).ravel()  # index byte3 * 256 + byte2
    return low, high


_T0 = _byte_table()
_T0_LIST = [int(v) for v in _T0]
_LOW16, _HIGH16 = _word_tables(_T0)


def _apply(operator: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Apply a GF(2) linear map given by its 32 columns (images of bit 0..31) to each uint32 of ``v``."""
    bits = (v[..., None] >> np.arange(32, dtype=np.uint32)) & 1  # (..., 32)
    return np.bitwise_xor.reduce(np.where(bits == 1, operator, np.uint32(0)), axis=-1).astype(np.uint32)


@functools.cache
def _zero_bytes_operator(log2_bytes: int) -> np.ndarray:
    """Columns of the map that carries a register through 2**log2_bytes zero bytes."""
    if log2_bytes == 0:
        columns = np.uint32(1) << np.arange(32, dtype=np.uint32)
        return (_T0[columns & 0xFF] ^ (columns >> 8)).astype(np.uint32)
    half = _zero_bytes_operator(log2_bytes - 1)
    return _apply(half, half)  # the map squared: its columns carried through the map once more


@functools.cache
def _zero_bytes_tables(log2_bytes: int) -> np.ndarray:
    """(4, 256) byte tables of ``_zero_bytes_operator``: row j holds the images of b << 8j."""
    operator = _zero_bytes_operator(log2_bytes)
    b = np.arange(256, dtype=np.uint32)
    return np.stack([_apply(operator, b << np.uint32(8 * j)) for j in range(4)])


def _carry(registers: np.ndarray, log2_bytes: int) -> np.ndarray:
    """Carry every register through 2**log2_bytes zero bytes."""
    t = _zero_bytes_tables(log2_bytes)
    r = registers
    return t[0][r & 0xFF] ^ t[1][(r >> 8) & 0xFF] ^ t[2][(r >> 16) & 0xFF] ^ t[3][r >> 24]


def _lanes(words: np.ndarray, register: int) -> int:
    """Advance ``register`` over ``words``, a (lanes, lane_words) uint32 array, both powers of two, row-major."""
    lanes, lane_words = words.shape
    columns = np.ascontiguousarray(words.T)  # (lane_words, lanes): step i reads word i of every lane
    regs = np.zeros(lanes, dtype=np.uint32)
    regs[0] = register  # lane 0 continues the input so far; the others start from zero and are carried in below
    x = np.empty(lanes, dtype=np.uint32)
    index = np.empty(lanes, dtype=np.intp)
    high = np.empty(lanes, dtype=np.uint32)
    for row in columns:
        np.bitwise_xor(regs, row, out=x)
        np.bitwise_and(x, 0xFFFF, out=index, casting="unsafe")
        np.take(_LOW16, index, out=regs)
        np.right_shift(x, 16, out=index, casting="unsafe")
        np.take(_HIGH16, index, out=high)
        regs ^= high
    log2_span = (lane_words * 4).bit_length() - 1  # bytes per lane, a power of two
    while regs.size > 1:  # merge neighbours: left carried through the right's length, XOR right
        regs = _carry(regs[0::2], log2_span) ^ regs[1::2]
        log2_span += 1
    return int(regs[0])


def _pow2_floor(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC-32C of ``data``; pass an earlier result as ``crc`` to continue over more data.

    An array counts as its bytes in C order (what ``tobytes()`` returns); other buffers must be contiguous.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    register = (crc ^ 0xFFFFFFFF) & 0xFFFFFFFF
    pos = 0
    while buf.size - pos >= _MIN_VECTOR_BYTES:
        words = (buf.size - pos) // 4
        lanes = min(_MAX_LANES, _pow2_floor(words // _MIN_LANE_WORDS))
        lane_words = _pow2_floor(words // lanes)
        n = 4 * lanes * lane_words  # at least half of what is left, so this loop runs O(log size) times
        block = buf[pos:pos + n].view("<u4").reshape(lanes, lane_words)  # (lanes, lane_words): lanes contiguous
        register = _lanes(block, register)
        pos += n
    table = _T0_LIST
    for byte in buf[pos:].tobytes():
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register ^ 0xFFFFFFFF


def mask_crc32c(crc: int) -> int:
    """The masked form TensorFlow stores (rotate right 15, add a constant), so a CRC of CRCs is not degenerate."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
