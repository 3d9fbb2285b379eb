"""The EXIF ``UserComment`` of a JPEG or WebP file, read without decoding a pixel.

AUTOMATIC1111, Forge and SD.Next save a JPEG's or WebP's ``parameters`` text there (with
piexif: an 8-byte charset prefix, ``UNICODE`` = UTF-16), SwarmUI and Fooocus their JSON
(Fooocus with Pillow: no prefix, and in the first IFD rather than the Exif one). Pure:
standard library only.
"""

from __future__ import annotations

import struct

from sdfarm.errors import ImageMetadataError
from sdfarm.metadata.chunks import MAX_TEXT_BYTES

USER_COMMENT = 0x9286
EXIF_IFD = 0x8769
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # JPEG markers without a length


def jpeg_exif(data: bytes) -> bytes | None:
    """The TIFF bytes of a JPEG's APP1 Exif segment, if it has one."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageMetadataError("malformed JPEG (no marker where one was due)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # image data or its end: no metadata past here
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        body = data[pos + 4:pos + 2 + length]
        if len(body) != length - 2:
            raise ImageMetadataError("truncated JPEG (a segment is cut short)")
        if marker == 0xE1 and body.startswith(b"Exif\0\0"):
            return body[6:]
        pos += 2 + length
    raise ImageMetadataError("truncated JPEG (no image data)")


def webp_exif(data: bytes) -> bytes | None:
    """The TIFF bytes of a WebP's EXIF chunk, if it has one."""
    pos = 12
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if len(body) != size:
            raise ImageMetadataError(f"truncated WebP ({kind.decode('latin-1')} chunk cut short)")
        if kind == b"EXIF":
            return body[6:] if body.startswith(b"Exif\0\0") else body
        pos += 8 + size + (size & 1)
    return None


def user_comment(tiff: bytes) -> str | None:
    """The UserComment of EXIF data (a TIFF structure), decoded; ``None`` when absent."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        raise ImageMetadataError("malformed EXIF (no TIFF header)")
    try:
        entries = _ifd(tiff, order, struct.unpack(order + "I", tiff[4:8])[0])
        raw = entries.get(USER_COMMENT)
        if raw is None and EXIF_IFD in entries:
            pointer = struct.unpack(order + "I", entries[EXIF_IFD][:4])[0]
            raw = _ifd(tiff, order, pointer).get(USER_COMMENT)
    except struct.error:
        raise ImageMetadataError("malformed EXIF (an entry is cut short)") from None
    return None if raw is None else decode_user_comment(raw, order)


def _ifd(tiff: bytes, order: str, offset: int) -> dict[int, bytes]:
    """Each entry of the IFD at ``offset``: tag -> its value's bytes."""
    if offset + 2 > len(tiff):
        raise ImageMetadataError("malformed EXIF (an IFD lies past its end)")
    (count,) = struct.unpack(order + "H", tiff[offset:offset + 2])
    out = {}
    for i in range(count):
        at = offset + 2 + 12 * i
        if at + 12 > len(tiff):
            raise ImageMetadataError("malformed EXIF (an IFD is cut short)")
        tag, kind, n = struct.unpack(order + "HHI", tiff[at:at + 8])
        size = _TYPE_SIZES.get(kind, 1) * n
        if size > MAX_TEXT_BYTES:
            raise ImageMetadataError(f"EXIF value larger than {MAX_TEXT_BYTES >> 20} MB")
        if size <= 4:
            out[tag] = tiff[at + 8:at + 8 + size]
        else:
            (where,) = struct.unpack(order + "I", tiff[at + 8:at + 12])
            out[tag] = tiff[where:where + size]
    return out


def decode_user_comment(raw: bytes, order: str = ">") -> str:
    """By its 8-byte charset prefix; UTF-16's byte order from a BOM, else from where the zero
    bytes of ASCII characters fall (piexif writes big-endian whatever the TIFF's order), else
    the TIFF's. A value with no prefix (Pillow's, from a str) is UTF-8."""
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            text = body[:len(body) & ~1].decode("utf-16", "replace")
        else:
            even, odd = body[0::2].count(0), body[1::2].count(0)
            big = even > odd or (even == odd and order == ">")
            text = body[:len(body) & ~1].decode("utf-16-be" if big else "utf-16-le", "replace")
    elif prefix == b"JIS\0\0\0\0\0":
        text = body.decode("shift_jis", "replace")
    elif prefix in (b"ASCII\0\0\0", b"\0" * 8):
        text = _utf8_or_latin1(body)
    else:
        text = _utf8_or_latin1(raw)
    return text.rstrip("\0")


def _utf8_or_latin1(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
