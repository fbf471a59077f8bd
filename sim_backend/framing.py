"""Splitting a byte stream into SCPI program messages.

A message ends at a newline that is not inside an IEEE-488.2 definite-length
binary block (``#<n><length><data>``), whose data may contain any byte.
Both transports (in-process and TCP) frame with this same code.

Framing never fails on what a client sends, as an instrument's input parser
does not: a ``#`` that does not open a well-formed block header (``#`` then an
ASCII digit, then that many ASCII digits) is text, so the message ends at the
next newline and the instrument reports the bad block as a command error.
Only a message beyond the buffer's maximum size is a :class:`FramingError`.
"""

from __future__ import annotations


class FramingError(ValueError):
    """A message is too large to buffer, or (``split_block``) a block header is malformed."""


def _is_digit(byte: int) -> bool:
    return 0x30 <= byte <= 0x39  # ASCII only: str.isdigit() also accepts "²" and "٣"


class MessageBuffer:
    """Accumulate bytes; :meth:`feed` returns the complete messages so far."""

    def __init__(self, max_message: int = 256 << 20) -> None:
        self._buf = bytearray()
        self._scan = 0  # position up to which no terminator can occur
        self._max = max_message

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        while True:
            end = self._find_end()
            if end is None:
                break
            out.append(bytes(self._buf[:end]))
            del self._buf[: end + 1]
            self._scan = 0
        if len(self._buf) > self._max:
            raise FramingError("message exceeds the maximum size")
        return out

    def _find_end(self) -> int | None:
        buf, i = self._buf, self._scan
        while i < len(buf):
            nl = buf.find(b"\n", i)
            hash_ = buf.find(b"#", i)
            if nl < 0 and hash_ < 0:
                self._scan = len(buf)
                return None
            if hash_ < 0 or (0 <= nl < hash_):
                return nl
            # a block starts at hash_
            if hash_ + 2 > len(buf):
                self._scan = hash_
                return None
            if not _is_digit(buf[hash_ + 1]):
                i = hash_ + 1  # a lone '#' in text
                continue
            ndig = buf[hash_ + 1] - 0x30
            if ndig == 0:  # indefinite block: runs to the terminator
                i = hash_ + 2
                nl = buf.find(b"\n", i)
                if nl < 0:
                    self._scan = hash_
                    return None
                return nl
            length_text = bytes(buf[hash_ + 2: hash_ + 2 + ndig])
            if not all(map(_is_digit, length_text)):
                i = hash_ + 1  # not a block header: text, for the instrument to refuse
                continue
            if len(length_text) < ndig:
                self._scan = hash_
                return None
            data_end = hash_ + 2 + ndig + int(length_text)
            if data_end > len(buf):
                self._scan = hash_
                return None
            i = data_end
        self._scan = i
        return None


def split_block(message: bytes) -> tuple[bytes, bytes | None]:
    """Split ``HEADER args,#<block>`` into (text before the block, block data).

    Raises :class:`FramingError` if a ``#<digit>`` is not followed by its length digits.
    """
    idx = message.find(b"#")
    while idx >= 0:
        if idx + 1 < len(message) and _is_digit(message[idx + 1]):
            ndig = message[idx + 1] - 0x30
            if ndig == 0:
                return message[:idx], message[idx + 2:]
            length_text = message[idx + 2: idx + 2 + ndig]
            if len(length_text) != ndig or not all(map(_is_digit, length_text)):
                raise FramingError(f"bad block length {length_text!r}")
            length = int(length_text)
            start = idx + 2 + ndig
            return message[:idx], message[start: start + length]
        idx = message.find(b"#", idx + 1)
    return message, None


def block(data: bytes) -> bytes:
    """Encode ``data`` as an IEEE-488.2 definite-length block."""
    length = str(len(data)).encode()
    return b"#" + str(len(length)).encode() + length + data
