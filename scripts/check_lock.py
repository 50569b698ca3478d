"""Check that the locks in requirements/ agree with pyproject.toml (run by `make check`).

Each lock made from pyproject.toml ends with a stamp: the sha256 of the dependency lists it was
resolved from. The check fails when a stamp is stale (pyproject changed, `make lock` not run),
when a requirement of pyproject is missing from its lock or pinned outside its range, when a
pinned line has no hash, or when models.txt does not pin exactly what models.in lists.
``--stamp`` (called by scripts/lock) writes the stamps after pip-compile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
# lock file -> the pyproject extras resolved into it
EXTRAS = {"run.txt": ("cpu",), "test.txt": ("cpu", "test"), "cuda.txt": ("cuda",)}
STAMP = "# pyproject-sha256: "
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def requirements_for(project: dict[str, object], extras: tuple[str, ...]) -> list[str]:
    """The dependency strings a lock is resolved from: the base list plus ``extras``."""
    base = list(project["dependencies"])  # type: ignore[call-overload]
    optional: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    return base + [line for extra in extras for line in optional[extra]]


def digest(lines: list[str]) -> str:
    """The stamp of a dependency list."""
    return hashlib.sha256(json.dumps(lines).encode()).hexdigest()


def read_pins(text: str) -> tuple[dict[str, Version], list[str]]:
    """Pinned versions by canonical name, and the pins that carry no hash."""
    pins: dict[str, Version] = {}
    unhashed: list[str] = []
    entries = re.split(r"\n(?=\S)", text)
    for entry in entries:
        match = PIN.match(entry)
        if match is None:
            continue
        name = canonicalize_name(match.group(1))
        pins[name] = Version(match.group(2))
        if "--hash=sha256:" not in entry:
            unhashed.append(name)
    return pins, unhashed


def check_lock(path: Path, lines: list[str]) -> list[str]:
    """Problems of one pyproject lock."""
    text = path.read_text()
    problems = []
    if f"{STAMP}{digest(lines)}" not in text:
        problems.append(f"{path.name}: pyproject.toml changed since it was locked; run `make lock`")
    pins, unhashed = read_pins(text)
    problems += [f"{path.name}: {name} is pinned without a hash" for name in unhashed]
    for line in lines:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        if name not in pins:
            problems.append(f"{path.name}: {requirement.name} ({line}) is not in the lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{path.name}: {name}=={pins[name]} is outside {line!r}")
    return problems


def check_models() -> list[str]:
    """models.txt pins exactly the packages and versions of models.in, each with a hash."""
    wanted, _ = read_pins((LOCKS / "models.in").read_text())
    locked, unhashed = read_pins((LOCKS / "models.txt").read_text())
    problems = [f"models.txt: {name} is pinned without a hash" for name in unhashed]
    if wanted != locked:
        problems.append(f"models.txt pins {locked}, models.in asks for {wanted}; run `make lock`")
    return problems


def stamp(project: dict[str, object]) -> None:
    """Append (or replace) the stamp line of each pyproject lock."""
    for name, extras in EXTRAS.items():
        path = LOCKS / name
        kept = [line for line in path.read_text().splitlines() if not line.startswith(STAMP)]
        kept.append(f"{STAMP}{digest(requirements_for(project, extras))}")
        path.write_text("\n".join(kept) + "\n")


def main() -> int:
    """Check (default) or stamp the locks; exit 1 with one line per problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stamp", action="store_true", help="write the stamps (scripts/lock)")
    args = parser.parse_args()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    if args.stamp:
        stamp(project)
        return 0
    problems = check_models()
    for name, extras in EXTRAS.items():
        problems += check_lock(LOCKS / name, requirements_for(project, extras))
    for problem in problems:
        print(f"check-lock: {problem}", file=sys.stderr)
    if not problems:
        print(f"check-lock: {', '.join(EXTRAS)} and models.txt agree with pyproject.toml")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
