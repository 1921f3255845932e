"""The lock files pin everything the requirement files ask for, exactly, and nothing that pulls CUDA onto a CPU
machine: what the README's set-up and test commands install is decided here, not by the day of the install."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / lock).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{lock}: not an exact pin: {line!r}"
        found[canonical(match[1])] = match[2]
    return found


def asked(requirements: str) -> set[str]:
    names = set()
    for line in (ROOT / requirements).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            names |= asked(line.split(None, 1)[1])
            continue
        match = REQUIREMENT.match(line)
        assert match, line
        names.add(canonical(match[1]))
    return names


@pytest.mark.parametrize(
    ("requirements", "lock"),
    [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")],
)
def test_every_requirement_is_pinned_and_no_cuda_comes_with_torch(requirements: str, lock: str) -> None:
    locked = pins(lock)
    assert asked(requirements) <= set(locked)
    # The CPU build's version without its +cpu label: met by the CPU wheel and by a GPU box's own CUDA build.
    assert locked["torch"] == "2.13.0"
    assert not [name for name in locked if name.startswith(("nvidia-", "cuda-")) or name == "triton"]


def test_the_studio_and_its_tests_install_the_same_versions() -> None:
    studio, development = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: development.get(name) for name in studio} == studio
