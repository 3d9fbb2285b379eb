"""The generation text an image file carries, whatever its container: a PNG's text chunks, or
a JPEG's or WebP's EXIF UserComment (given as the ``parameters`` text it holds). Pure:
standard library only."""

from __future__ import annotations

from sdfarm.errors import ImageMetadataError
from sdfarm.metadata.a1111 import PARAMETERS_CHUNK
from sdfarm.metadata.chunks import PNG_SIGNATURE, read_png_text
from sdfarm.metadata.exif import jpeg_exif, user_comment, webp_exif

#: File name endings ``sdfarm index`` reads.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def read_image_text(data: bytes) -> dict[str, str]:
    """Keyword -> text, as :func:`read_png_text` gives a PNG's; :class:`ImageMetadataError`
    for a file that is none of the three, or is cut short."""
    if data.startswith(PNG_SIGNATURE):
        return read_png_text(data)
    if data.startswith(b"\xff\xd8"):
        tiff = jpeg_exif(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        tiff = webp_exif(data)
    else:
        raise ImageMetadataError("not a PNG, JPEG or WebP image")
    text = user_comment(tiff) if tiff else None
    # Cameras fill the field with spaces: that is no text.
    return {PARAMETERS_CHUNK: text} if text and text.strip() else {}
