"""`include = ["accounts.d/*.toml"]`: more [[accounts]] and [[subscriptions]] in files of their own.

The main file's tables come first, then each included file's, in sorted path order, merged into
one raw config that is validated as a whole (names are unique across every file). `Origins`
remembers which file and which of its entries each merged entry came from, so a problem names
the file a person has to open: `accounts.d/acme.toml: subscriptions[0].poll_interval: ...`.
A glob that matches nothing is no error: a new, empty `accounts.d` is normal.
"""

from __future__ import annotations

import glob
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INCLUDE_KEY = "include"
SECTIONS = ("accounts", "subscriptions")  # all an included file may hold
_INDEXED = re.compile(r"^(accounts|subscriptions)\[(\d+)\]")


@dataclass
class Origins:
    """Where each merged [[accounts]] / [[subscriptions]] entry was written, and the problems
    found while reading the included files. `None` is the main file."""

    entries: dict[str, list[tuple[str | None, int]]] = field(
        default_factory=lambda: {section: [] for section in SECTIONS}
    )
    problems: list[tuple[str | None, str]] = field(default_factory=list)  # (file, problem)

    def of(self, section: str, index: int) -> tuple[str | None, int]:
        """The file and the index in it of merged entry `index` (unknown ones: main, as is)."""
        entries = self.entries.get(section, [])
        return entries[index] if 0 <= index < len(entries) else (None, index)

    def locate(self, problem: str) -> tuple[str | None, str]:
        """A problem about the merged config -> (its file, the problem as that file has it)."""
        match = _INDEXED.match(problem)
        if not match:
            return None, problem
        file, index = self.of(match.group(1), int(match.group(2)))
        return file, f"{match.group(1)}[{index}]{problem[match.end() :]}"

    def elsewhere(self, section: str, index: int, other: int) -> str:
        """`; also in FILE: section[i]` when merged entry `other` sits in another file than
        `index`, else nothing: a duplicate's other half, named where it can be found."""
        file, _ = self.of(section, index)
        other_file, other_index = self.of(section, other)
        if other_file == file:
            return ""
        where = "the main file" if other_file is None else other_file
        return f"; also in {where}: {section}[{other_index}]"


def _label(path: Path, base_dir: Path, main_dir: Path) -> str:
    """How a problem names an included file: beside the main file's path as it was given
    (`accounts.d/acme.toml` for `--config config.toml`), or absolute when outside its folder."""
    try:
        return str(main_dir / path.relative_to(base_dir))
    except ValueError:
        return str(path)


def matched_files(patterns: list[str], base_dir: Path, main_file: Path) -> list[Path]:
    """Every regular file the globs match, each once, sorted; never the main file itself."""
    found: set[Path] = set()
    for pattern in patterns:
        absolute = pattern
        if not Path(pattern).is_absolute():
            absolute = str(Path(glob.escape(str(base_dir))) / pattern)
        found.update(Path(p) for p in glob.glob(absolute, recursive=True))
    main = main_file.resolve()
    return sorted(p for p in found if p.is_file() and p.resolve() != main)


def _read(path: Path) -> dict[str, Any] | str:
    """The TOML in `path`, or why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        return f"cannot read the file ({reason})"
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return f"not valid TOML: {error}"


def _relative_to(entry: dict[str, Any], directory: Path) -> dict[str, Any]:
    """An included account's relative `api_token_file` is relative to its own file's folder."""
    value = entry.get("api_token_file")
    if isinstance(value, str) and value and not value.startswith("${"):
        if not Path(value).is_absolute():
            return {**entry, "api_token_file": str(directory / value)}
    return entry


def merge(raw: dict[str, Any], main_file: Path) -> tuple[dict[str, Any], Origins]:
    """The main file's raw config with its included files' tables appended, and their origins.
    `include` itself is taken out; a malformed one is a problem of the main file's."""
    origins = Origins()
    raw = dict(raw)
    patterns = raw.pop(INCLUDE_KEY, [])
    merged: dict[str, Any] = {}
    for section in SECTIONS:
        entries = raw.get(section)
        if isinstance(entries, list):
            merged[section] = list(entries)
            origins.entries[section] = [(None, i) for i in range(len(entries))]
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        origins.problems.append(
            (
                None,
                f'{INCLUDE_KEY}: must be a list of glob patterns, e.g. ["accounts.d/*.toml"] '
                f"(got {patterns!r})",
            )
        )
        patterns = []
    base_dir = main_file.resolve().parent
    for path in matched_files(patterns, base_dir, main_file):
        label = _label(path, base_dir, main_file.parent)
        content = _read(path)
        if isinstance(content, str):
            origins.problems.append((label, content))
            continue
        for key in content:
            if key not in SECTIONS:
                origins.problems.append(
                    (
                        label,
                        f"{key}: not allowed in an included file, which holds only "
                        "[[accounts]] and [[subscriptions]]",
                    )
                )
        for section in SECTIONS:
            entries = content.get(section)
            if entries is None:
                continue
            if not isinstance(entries, list):
                origins.problems.append(
                    (label, f"{section}: must be an array of tables ([[{section}]])")
                )
                continue
            if section == "accounts":
                entries = [
                    _relative_to(e, path.parent) if isinstance(e, dict) else e for e in entries
                ]
            if not isinstance(raw.get(section, []), list):
                continue  # the main file's own table is wrong, and reported as such
            origins.entries[section] += [(label, i) for i in range(len(entries))]
            merged.setdefault(section, []).extend(entries)
    raw.update(merged)
    return raw, origins
