"""What real tools say about the files and sockets tests make, independent of the studio's own code."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any


def ffprobe(
    path: Path | str, entries: str, *, count_frames: bool = False, first_video: bool = False
) -> dict[str, Any]:
    """ffprobe's JSON for ``-show_entries entries``; ``count_frames`` decodes every frame to count them, and
    ``first_video`` looks at the first video stream only."""
    command = ["ffprobe", "-v", "error"]
    if count_frames:
        command.append("-count_frames")
    if first_video:
        command += ["-select_streams", "v:0"]
    command += ["-show_entries", entries, "-of", "json", str(path)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
