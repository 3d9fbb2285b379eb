"""Reading the text chunks of a PNG without decoding its pixels."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdfarm.errors import ImageMetadataError
from sdfarm.metadata.chunks import read_png_text


def png_bytes(**texts: tuple[str, str]) -> bytes:
    """A 4x4 PNG with text chunks given as name=(kind, text), kind tEXt, zTXt or iTXt."""
    info = PngInfo()
    for name, (kind, text) in texts.items():
        if kind == "iTXt":
            info.add_itxt(name, text)
        else:
            info.add_text(name, text, zip=kind == "zTXt")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def test_plain_compressed_and_international_text_chunks_are_all_read():
    data = png_bytes(parameters=("tEXt", "a cat\nSteps: 1"), comment=("zTXt", "zipped " * 50),
                     sdfarm=("iTXt", '{"prompt": "猫, ein Kätzchen"}'))
    assert read_png_text(data) == {"parameters": "a cat\nSteps: 1", "comment": "zipped " * 50,
                                   "sdfarm": '{"prompt": "猫, ein Kätzchen"}'}


def test_pillow_reads_the_same_text_we_do():
    data = png_bytes(parameters=("tEXt", "a lighthouse"), sdfarm=("iTXt", "ünïcode"))
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert read_png_text(data) == dict(im.text)


@pytest.mark.parametrize("mangle, message", [
    (lambda d: b"GIF89a" + d[6:], "not a PNG file"),
    (lambda d: d[: len(d) // 2], "truncated PNG"),
    (lambda d: d.replace(b"a lighthouse", b"a lighthousf"), "CRC mismatch"),
])
def test_files_that_are_not_whole_pngs_are_refused_with_the_reason(mangle, message):
    data = png_bytes(parameters=("tEXt", "a lighthouse"))
    with pytest.raises(ImageMetadataError, match=message):
        read_png_text(mangle(data))


def test_a_png_without_text_has_no_chunks():
    assert read_png_text(png_bytes()) == {}


def test_a_decompression_bomb_in_a_text_chunk_is_refused():
    import struct

    body = b"parameters\0\0" + zlib.compress(b"x" * (17 << 20), 9)
    chunk = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    data = png_bytes()
    data = data[:33] + chunk + data[33:]  # after the IHDR chunk
    with pytest.raises(ImageMetadataError, match="larger than 16 MB"):
        read_png_text(data)


def with_chunk(kind: bytes, body: bytes) -> bytes:
    import struct

    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    data = png_bytes()
    return data[:33] + chunk + data[33:]  # after the IHDR chunk


def test_utf8_text_in_a_latin1_chunk_is_read_as_utf8_and_latin1_text_still_as_latin1():
    # Given writers that put UTF-8 in tEXt and zTXt (the standard says Latin-1)
    prompt = "ein Kätzchen, 猫, café"
    assert read_png_text(with_chunk(b"tEXt", b"parameters\0" + prompt.encode("utf-8"))) == {
        "parameters": prompt}
    zipped = b"parameters\0\0" + zlib.compress(prompt.encode("utf-8"))
    assert read_png_text(with_chunk(b"zTXt", zipped)) == {"parameters": prompt}
    # And a Latin-1 one (not valid UTF-8) is read as the standard says
    assert read_png_text(with_chunk(b"tEXt", b"parameters\0caf\xe9")) == {"parameters": "café"}
