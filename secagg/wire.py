"""Low-level canonical byte encoding (spec §7.1).

All multi-byte integers are big-endian and fixed-width; byte strings and lists
are length-prefixed with a u32. A :class:`Reader` refuses to read past the end
and :meth:`Reader.finish` refuses trailing bytes, so every value has exactly one
encoding and a truncated or padded message is rejected, never half-parsed.
"""

from __future__ import annotations

import numpy as np

from secagg.checks import is_plain_int
from secagg.errors import MessageDecodeError

MAX_U32 = (1 << 32) - 1


class Writer:
    """Append-only builder of a canonical encoding."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def u8(self, value: int) -> Writer:
        return self._uint(value, 1)

    def u32(self, value: int) -> Writer:
        return self._uint(value, 4)

    def u64(self, value: int) -> Writer:
        return self._uint(value, 8)

    def fixed(self, data: bytes, length: int) -> Writer:
        if len(data) != length:
            raise ValueError(f"field must be exactly {length} bytes, got {len(data)}")
        self._buf += data
        return self

    def var(self, data: bytes) -> Writer:
        self.u32(len(data))
        self._buf += data
        return self

    def raw(self, data: bytes | memoryview) -> Writer:
        self._buf += data
        return self

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def _uint(self, value: int, width: int) -> Writer:
        if not is_plain_int(value):
            raise TypeError("integer field expected")
        if not 0 <= value < (1 << (8 * width)):
            raise ValueError(f"integer field out of range for {width} bytes")
        self._buf += value.to_bytes(width, "big")
        return self


class Reader:
    """Bounds-checked cursor over an encoding; every failure is a MessageDecodeError."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MessageDecodeError("message must be bytes")
        self._data = memoryview(bytes(data))
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, n: int, what: str) -> memoryview:
        if n < 0 or self._pos + n > len(self._data):
            raise MessageDecodeError(f"truncated message while reading {what}")
        view = self._data[self._pos : self._pos + n]
        self._pos += n
        return view

    def u8(self, what: str) -> int:
        return self._take(1, what)[0]

    def u32(self, what: str) -> int:
        return int.from_bytes(self._take(4, what), "big")

    def u64(self, what: str) -> int:
        return int.from_bytes(self._take(8, what), "big")

    def fixed(self, length: int, what: str) -> bytes:
        return bytes(self._take(length, what))

    def view(self, length: int, what: str) -> memoryview:
        """The next ``length`` bytes as a read-only view of the message, not a copy.

        For the one field that is as long as the model (a masked vector, §7.3):
        copying it would cost the receiver a whole extra vector of memory and a
        pass over it. The view keeps the received message alive while it is held.
        """
        return self._take(length, what)

    def var(self, what: str, max_len: int) -> bytes:
        n = self.u32(what + " length")
        if n > max_len:
            raise MessageDecodeError(f"{what} is {n} bytes, limit {max_len}")
        return bytes(self._take(n, what))

    def count(self, what: str, max_count: int) -> int:
        n = self.u32(what + " count")
        if n > max_count:
            raise MessageDecodeError(f"{what} count {n} exceeds limit {max_count}")
        return n

    def peek_records(self, dtype: np.dtype, count: int) -> np.ndarray | None:
        """The next ``count`` fixed-size records as a read-only array, without consuming them.

        None when fewer bytes remain. Decoders use it to parse a long list of
        fixed-size entries in one pass (per-field reads cost microseconds each,
        seconds for a server with 10^4 clients) and :meth:`skip` past it once the
        entries are valid; on any defect they re-read field by field, so the error
        raised is exactly the one the field-by-field reader gives.
        """
        if count * dtype.itemsize > self.remaining:
            return None
        return np.frombuffer(self._data, dtype=dtype, count=count, offset=self._pos)

    def skip(self, n: int, what: str) -> None:
        self._take(n, what)

    def finish(self) -> None:
        if self.remaining:
            raise MessageDecodeError(f"{self.remaining} trailing bytes after message")
