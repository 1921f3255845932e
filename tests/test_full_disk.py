"""A full disk, for real: the data directory on a small tmpfs, filled up. Every command that writes says so in words
and leaves the studio as it was, and it works again once space is freed. Needs root to mount; skipped elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free; returns the filler, whose removal frees the space."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def noisy_png(path: Path, side: int = 700) -> Path:
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
    return path


def test_a_full_disk_is_said_in_words_and_changes_nothing(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = small_disk / "data"
    photo = noisy_png(tmp_path / "mara.png")  # about 1.4 MB, too big for what is left
    assert main(["project", "create", "Film", "--width", "64", "--height", "64", "--data-dir", str(data)]) == 0
    filler = fill(small_disk, leave=300_000)
    capsys.readouterr()

    added = main(["character", "add", "Film", "Mara", "--reference", str(photo), "--data-dir", str(data)])
    err = capsys.readouterr().err
    assert added == 1 and err.startswith("error: ") and "disk is full" in err and "Traceback" not in err

    board = tmp_path / "board.json"
    board.write_text(
        json.dumps(
            {
                "project": "Board",
                "characters": [{"name": "Mara", "references": ["mara.png"]}],
                "shots": [{"prompt": "p", "duration": 1}],
            }
        )
    )
    imported = main(["import", str(board), "--data-dir", str(data)])
    err = capsys.readouterr().err
    assert imported == 1 and "disk is full" in err and "Traceback" not in err

    filler.unlink()
    assert main(["characters", "Film", "--json", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == {"characters": []}  # nothing half-made
    assert main(["project", "list", "--json", "--data-dir", str(data)]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["projects"]] == ["Film"]
    assert main(["verify", "--data-dir", str(data)]) == 0  # no stray file in the store
    assert main(["character", "add", "Film", "Mara", "--reference", str(photo), "--data-dir", str(data)]) == 0


def test_a_read_only_data_directory_is_not_called_damaged(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = small_disk / "data"
    assert main(["project", "create", "Film", "--data-dir", str(data)]) == 0
    made = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot remount the tmpfs read-only here")
    capsys.readouterr()

    listed = main(["project", "list", "--data-dir", str(data)])
    created = main(["project", "create", "Other", "--data-dir", str(data)])

    err = capsys.readouterr().err
    assert "Traceback" not in err and "restore it from a backup" not in err, err
    assert listed == 1 or created == 1
    assert "read-only" in err or "for writing" in err, err


def test_packing_onto_a_full_disk_says_so_and_leaves_no_bundle(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"  # the studio on a roomy disk, the bundle going to the full one
    photo = noisy_png(tmp_path / "mara.png")
    assert main(["project", "create", "Film", "--data-dir", str(data)]) == 0
    assert main(["character", "add", "Film", "Mara", "--reference", str(photo), "--data-dir", str(data)]) == 0
    filler = fill(small_disk, leave=200_000)
    capsys.readouterr()

    packed = main(["pack", "Film", str(small_disk / "film.zip"), "--data-dir", str(data)])

    err = capsys.readouterr().err
    assert packed == 1 and err.startswith("error: ") and "disk is full" in err and "Traceback" not in err, err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no bundle, no half of one
    filler.unlink()
    assert main(["pack", "Film", str(small_disk / "film.zip"), "--data-dir", str(data)]) == 0
