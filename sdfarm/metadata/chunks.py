"""The text chunks of a PNG file (tEXt, zTXt, iTXt), read without decoding a pixel.

Indexing tens of thousands of images should cost a file read and a hash each, not an image
decode. Pure: standard library only.
"""

from __future__ import annotations

import struct
import zlib

from sdfarm.errors import ImageMetadataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A text chunk larger than this is not generation parameters; refusing it bounds memory.
MAX_TEXT_BYTES = 16 << 20


def read_png_text(data: bytes) -> dict[str, str]:
    """Every text chunk of the PNG in ``data``, keyword -> text (the first one of a keyword).

    Raises :class:`ImageMetadataError` for a file that is not a PNG or is cut short.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ImageMetadataError("not a PNG file")
    out: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise ImageMetadataError("truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body_end = pos + 8 + length
        if body_end + 4 > len(data):
            raise ImageMetadataError(f"truncated PNG ({kind.decode('latin-1')} chunk cut short)")
        if kind == b"IEND":
            return out
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            body = data[pos + 8:body_end]
            (crc,) = struct.unpack(">I", data[body_end:body_end + 4])
            if zlib.crc32(kind + body) != crc:
                raise ImageMetadataError(f"corrupt {kind.decode()} chunk (CRC mismatch)")
            keyword, text = _decode(kind, body)
            out.setdefault(keyword, text)
        pos = body_end + 4


def _decode(kind: bytes, body: bytes) -> tuple[str, str]:
    keyword, sep, rest = body.partition(b"\0")
    if not sep:
        raise ImageMetadataError(f"malformed {kind.decode()} chunk (no keyword)")
    name = keyword.decode("latin-1")
    try:
        if kind == b"tEXt":
            return name, _latin1_or_utf8(rest)
        if kind == b"zTXt":
            return name, _latin1_or_utf8(_inflate(rest[1:]))
        compressed, _method = rest[0], rest[1]
        _language, _, rest = rest[2:].partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return name, (_inflate(text) if compressed else text).decode("utf-8")
    except (IndexError, UnicodeDecodeError, zlib.error) as exc:
        raise ImageMetadataError(f"malformed {kind.decode()} chunk {name!r}: {exc}") from None


def _latin1_or_utf8(text: bytes) -> str:
    """tEXt and zTXt are Latin-1 by the PNG standard, yet some writers put UTF-8 there. Bytes
    that decode as UTF-8 were almost never meant as Latin-1 (which would read "Ã©" for "é")."""
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        return text.decode("latin-1")


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, MAX_TEXT_BYTES)
    if d.unconsumed_tail:
        raise ImageMetadataError(f"text chunk larger than {MAX_TEXT_BYTES >> 20} MB")
    return out
