"""JPEG and WebP images carry their parameters in the EXIF UserComment: read without decoding a
pixel, in each charset the writers use, from either IFD; and checked against Pillow's reading."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from sdfarm.errors import ImageMetadataError
from sdfarm.metadata.exif import decode_user_comment
from sdfarm.metadata.generation import generation_from_chunks
from sdfarm.metadata.image import read_image_text

TEXT = ("a lighthouse, at dawn: 灯台\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, "
        "Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 64x48, Model: dreamshaper_8")


def image_bytes(fmt: str, comment: bytes | None, *, ifd: str = "exif",
                little_endian: bool = False) -> bytes:
    exif = Image.Exif()
    if comment is not None:
        if ifd == "exif":
            exif.get_ifd(0x8769)[0x9286] = comment
        else:
            exif[0x9286] = comment
    exif.endian = "<" if little_endian else ">"  # the TIFF byte order Pillow writes
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 60, 90)).save(buf, format=fmt, exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("comment, ifd, little_endian", [
    (b"UNICODE\0" + TEXT.encode("utf-16-be"), "exif", False),  # A1111, Forge (piexif)
    (b"UNICODE\0" + TEXT.encode("utf-16-be"), "exif", True),   # the same in an II file
    (b"UNICODE\0" + TEXT.encode("utf-16-le"), "exif", True),   # little-endian writers
    (b"UNICODE\0" + TEXT.encode("utf-16"), "exif", False),     # with a byte order mark
    (b"ASCII\0\0\0" + TEXT.encode("utf-8"), "exif", False),
    (TEXT.encode("utf-8"), "ifd0", False),                     # Fooocus (Pillow, no prefix)
])
def test_the_user_comment_of_a_jpeg_or_webp_is_its_parameters_text(fmt, comment, ifd,
                                                                     little_endian):
    data = image_bytes(fmt, comment, ifd=ifd, little_endian=little_endian)
    assert read_image_text(data) == {"parameters": TEXT}
    spec = generation_from_chunks(read_image_text(data)).spec
    assert (spec.prompt, spec.seed, spec.sampler, spec.schedule, spec.width) == (
        "a lighthouse, at dawn: 灯台", 1234, "DPM++ 2M", "Karras", 64)


def test_we_read_what_pillow_reads():
    data = image_bytes("JPEG", b"UNICODE\0" + TEXT.encode("utf-16-be"))
    with Image.open(io.BytesIO(data)) as im:
        raw = im.getexif().get_ifd(0x8769)[0x9286]
    assert read_image_text(data)["parameters"] == decode_user_comment(raw) == TEXT


def test_images_without_a_user_comment_have_no_text():
    assert read_image_text(image_bytes("JPEG", None)) == {}
    assert read_image_text(image_bytes("WEBP", None)) == {}
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")  # no EXIF at all
    assert read_image_text(buf.getvalue()) == {}
    # A camera's blank comment is no comment
    assert read_image_text(image_bytes("JPEG", b"ASCII\0\0\0" + b" " * 64)) == {}
    assert read_image_text(image_bytes("JPEG", b"\0" * 72)) == {}


def test_cut_or_foreign_files_are_refused_with_the_reason():
    data = image_bytes("JPEG", b"UNICODE\0" + TEXT.encode("utf-16-be"))
    with pytest.raises(ImageMetadataError, match="truncated JPEG"):
        read_image_text(data[:60])
    webp = image_bytes("WEBP", b"UNICODE\0" + TEXT.encode("utf-16-be"))
    with pytest.raises(ImageMetadataError, match="truncated WebP"):
        read_image_text(webp[:40])
    with pytest.raises(ImageMetadataError, match="not a PNG, JPEG or WebP image"):
        read_image_text(b"GIF89a....")


def test_broken_utf16_in_a_user_comment_is_read_with_replacement_not_refused_with_a_traceback():
    # A lone surrogate after a byte order mark, and an odd byte at the end
    assert decode_user_comment(b"UNICODE\0\xff\xfe" + "ab".encode("utf-16-le") + b"\x00\xd8") == "ab\ufffd"
    assert decode_user_comment(b"UNICODE\0\xff\xfe" + "ab".encode("utf-16-le") + b"\x00") == "ab"
