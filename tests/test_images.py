"""projects.images.check_image: what gets into the studio as an image, and the clear refusals of everything else.

Every file here is a real photograph (the ``photos`` fixture), a real photograph damaged on purpose, or a PNG
whose header is crafted by hand so that a huge declared size costs a few bytes on disk.
"""

from __future__ import annotations

import shutil
import struct
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image

from projects.errors import InvalidImage, InvalidInput
from projects.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, check_image


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted_png(path: Path, width: int, height: int) -> Path:
    """A PNG of a few dozen bytes whose IHDR declares ``width`` x ``height`` 8-bit grey pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


def refused(path: Path, field: str = "image") -> InvalidImage:
    with pytest.raises(InvalidImage) as caught:
        check_image(path, field)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    return caught.value


@pytest.fixture(autouse=True)
def pillow_bomb_limit_stays_on():
    before = Image.MAX_IMAGE_PIXELS
    assert before is not None
    yield
    assert Image.MAX_IMAGE_PIXELS is not None
    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("name", "extension"),
    [("astronaut", "png"), ("chelsea", "jpg"), ("coffee", "png"), ("rocket", "webp")],
)
def test_real_photos_are_accepted_with_their_size_and_extension(photos, name, extension):
    path = photos[name]
    with Image.open(path) as image:
        expected = image.size
    checked = check_image(path)
    assert checked.path == path
    assert checked.extension == extension
    assert (checked.width, checked.height) == expected
    assert max(checked.width, checked.height) == 128  # the fixture's thumbnails


def test_extension_comes_from_the_content_not_the_file_name(tmp_path, photos):
    disguised = shutil.copy(photos["chelsea"], tmp_path / "chelsea.png")  # a JPEG named .png
    assert check_image(Path(disguised)).extension == "jpg"


def test_the_field_name_is_part_of_the_error(tmp_path):
    error = refused(tmp_path / "nope.png", "character 1 (Mara).references[2]")
    assert isinstance(error, InvalidInput)
    assert "nope.png" in str(error)


def test_missing_file(tmp_path):
    assert "file not found" in str(refused(tmp_path / "missing.png"))


def test_a_folder_is_not_an_image(tmp_path):
    (tmp_path / "refs.png").mkdir()
    assert "file not found" in str(refused(tmp_path / "refs.png"))


def test_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    message = str(refused(empty))
    assert "empty.png" in message
    assert "0 bytes" in message


def test_text_file_named_png(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("Mara: red hair, green coat, lantern in her left hand\n")
    message = str(refused(fake))
    assert "notes.png" in message
    assert "not an image" in message


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "rocket"])
def test_truncated_photo(tmp_path, photos, name):
    data = photos[name].read_bytes()
    cut = tmp_path / f"cut{photos[name].suffix}"
    cut.write_bytes(data[: len(data) // 2])
    message = str(refused(cut))
    assert cut.name in message
    assert "truncated or damaged" in message


@pytest.mark.parametrize("size", [(50_000, 50_000), (10_000, 10_000)], ids=["bomb-error", "bomb-warning"])
def test_decompression_bomb(tmp_path, size):
    # 50000 x 50000 is over twice Pillow's limit (an error); 10000 x 10000 is between the limit and twice it
    # (a warning, which check_image must treat as an error too). Both are under the studio's side limit.
    bomb = crafted_png(tmp_path / "bomb.png", *size)
    assert bomb.stat().st_size < 200
    filters = list(warnings.filters)
    message = str(refused(bomb))
    assert "decompression bomb" in message
    assert warnings.filters == filters  # the "error" filter does not leak out of check_image


def test_studio_limit_holds_even_if_another_library_turns_pillows_off(tmp_path, monkeypatch):
    bomb = crafted_png(tmp_path / "bomb.png", 50_000, 50_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    message = str(refused(bomb))
    assert "50000x50000" in message


@pytest.mark.parametrize(
    "size",
    [(MAX_IMAGE_SIDE + 500, 8), (8, MAX_IMAGE_SIDE + 500), (6001, 6000)],
    ids=["too-wide", "too-tall", "too-many-pixels"],
)
def test_image_over_the_studio_limit_but_under_pillows(tmp_path, size):
    assert size[0] * size[1] < Image.MAX_IMAGE_PIXELS
    assert size[0] > MAX_IMAGE_SIDE or size[1] > MAX_IMAGE_SIDE or size[0] * size[1] > MAX_IMAGE_PIXELS
    big = tmp_path / "big.png"
    Image.new("1", size).save(big)  # a real, tiny, 1-bit PNG
    assert big.stat().st_size < 20_000
    message = str(refused(big))
    assert f"{size[0]}x{size[1]}" in message
    assert "limit" in message


def test_image_exactly_at_the_side_limit_is_accepted(tmp_path):
    edge = tmp_path / "edge.png"
    Image.new("L", (MAX_IMAGE_SIDE, 8), 200).save(edge)
    checked = check_image(edge)
    assert (checked.width, checked.height, checked.extension) == (MAX_IMAGE_SIDE, 8, "png")


def test_file_over_the_byte_limit(tmp_path):
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)  # sparse: no disk space used
    message = str(refused(huge))
    assert "huge.png" in message
    assert f"{MAX_IMAGE_BYTES // 2**20} MiB" in message


@pytest.mark.parametrize(("suffix", "kind"), [(".gif", "GIF"), (".bmp", "BMP"), (".png", "GIF")])
def test_unsupported_formats(tmp_path, photos, suffix, kind):
    path = tmp_path / f"astronaut{suffix}"
    with Image.open(photos["astronaut"]) as image:
        image.save(path, format=kind)
    message = str(refused(path))
    assert f"is a {kind} image" in message
    assert "PNG, JPEG or WebP" in message


def test_multi_picture_jpeg_is_a_jpeg(tmp_path, photos):
    path = tmp_path / "portrait.jpg"
    with Image.open(photos["astronaut"]) as image:
        image.convert("RGB").save(path, format="MPO", save_all=True, append_images=[image.convert("RGB")])
    checked = check_image(path)
    assert (checked.extension, checked.width, checked.height) == ("jpg", 128, 128)
