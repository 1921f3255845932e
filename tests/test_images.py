"""projects.images.check_image: what gets into the studio as an image, and the clear refusals of everything else;
and pipelines.pictures: how an accepted picture is seen (upright, wide samples scaled).

Every file here is a real photograph (the ``photos`` fixture), a real photograph damaged on purpose, or a PNG
whose header is crafted by hand so that a huge declared size costs a few bytes on disk.
"""

from __future__ import annotations

import shutil
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
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


# Pictures as they are meant to be seen (pipelines.pictures).


def ramp() -> np.ndarray:
    return np.tile(np.arange(256, dtype=np.uint8), (32, 1))


@pytest.mark.parametrize(
    ("mode", "samples"),
    [
        ("I;16", lambda: ramp().astype(np.uint16) * 257),
        ("I", lambda: ramp().astype(np.int32) * 257),
        ("F", lambda: ramp().astype(np.float32) / 255),
        ("F", lambda: ramp().astype(np.float32)),
        ("I", lambda: ramp().astype(np.int32) * 1000 - 70_000),  # no known range: stretched end to end
    ],
    ids=["16-bit", "32-bit-int-16-bit-range", "float-fraction", "float-8-bit-range", "int-any-range"],
)
def test_wide_samples_are_scaled_not_clipped_to_white(mode: str, samples: Any) -> None:
    from pipelines.pictures import to_rgb

    picture = Image.fromarray(samples())
    assert picture.mode == mode
    rgb = np.asarray(to_rgb(picture))
    assert rgb.shape == (32, 256, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(np.int16) - ramp()[:, :, None]).max() <= 1


def test_a_16_bit_png_is_accepted_and_opens_as_its_picture(tmp_path: Path) -> None:
    from pipelines.pictures import open_rgb

    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp().astype(np.uint16) * 257).save(path)
    checked = check_image(path)
    assert (checked.extension, checked.width, checked.height) == ("png", 256, 32)
    assert np.abs(np.asarray(open_rgb(path)).astype(np.int16) - ramp()[:, :, None]).max() <= 1


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_jpeg_with_an_exif_orientation_opens_upright_at_its_upright_size(
    tmp_path: Path, photos: dict[str, Path], orientation: int
) -> None:
    from pipelines.pictures import open_rgb

    with Image.open(photos["chelsea"]) as image:
        upright = image.convert("RGB").crop((0, 0, 128, 96))
    stored = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,  # shown turned a quarter clockwise: stored a quarter the other way
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"phone-{orientation}.jpg"
    upright.transpose(stored).save(path, quality=95, exif=exif)

    checked = check_image(path)
    assert (checked.width, checked.height) == upright.size
    seen = open_rgb(path)
    assert seen.size == upright.size and seen.mode == "RGB"
    assert np.abs(np.asarray(seen).astype(np.int16) - np.asarray(upright)).mean() < 4


def test_damaged_exif_leaves_the_picture_as_stored(tmp_path: Path, photos: dict[str, Path]) -> None:
    from pipelines.pictures import open_rgb

    path = tmp_path / "odd-exif.jpg"
    with Image.open(photos["chelsea"]) as image:
        image.convert("RGB").save(path, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01")  # cut short
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # Pillow's own notice, each time the file opens
        seen = open_rgb(path)
        with Image.open(path) as image:
            assert seen.size == image.size and np.array_equal(np.asarray(seen), np.asarray(image.convert("RGB")))
