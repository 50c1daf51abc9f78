"""What a source reader produces: a Manifest listing every image (name, split, label) with a way to write its
pixels, plus the file-listing helpers the readers share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fer.data.bad_input import BadInputLog
from fer.data.decode import decode_files
from fer.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
UNLABELLED = -1


@dataclass
class FillReport:
    """What happened while writing pixels: which rows made it, and why the others did not."""

    ok: np.ndarray
    resized: int = 0
    color: int = 0


@dataclass
class Manifest:
    names: list[str]  # how the user knows each image: path relative to the root, or a CSV row
    splits: list[str]  # split name per image ("train", "publictest", "predict", ...)
    labels: np.ndarray  # int64 class index, UNLABELLED (-1) where the split has no labels
    identity: dict  # everything the pixels depend on (file sizes and mtimes, settings): hashed by the cache
    fill: Callable[[np.ndarray, BadInputLog, bool], FillReport]  # (out [N,48,48], bad log, progress) -> report
    notes: list[str] = field(default_factory=list)  # things worth reporting (e.g. unlabelled files ignored)

    def __len__(self) -> int:
        return len(self.names)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} not found: {path} (set data.root=PATH to the folder that holds your data)")
    return path


def list_files(folder: Path) -> list[os.DirEntry]:
    """Regular files in a folder, sorted by name; hidden files (.DS_Store, ._x) are not images."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if e.is_file() and not e.name.startswith(".")), key=lambda e: e.name)


def file_fill(paths: list[str], names: list[str]) -> Callable[[np.ndarray, BadInputLog, bool], FillReport]:
    def fill(out: np.ndarray, bad: BadInputLog, progress: bool) -> FillReport:
        result = decode_files(paths, out, progress=progress, max_pixels=bad.max_pixels)
        for i in sorted(result.errors):
            bad.bad(names[i], result.errors[i])
        return FillReport(ok=result.ok, resized=result.resized, color=result.color)

    return fill


def stat_identity(entries: list[os.DirEntry], root: Path) -> list:
    """(path relative to root, size, mtime) of each file: what a folder source's pixels depend on."""
    out, prefixes = [], {}
    for e in entries:
        st = e.stat()
        folder = os.path.dirname(e.path)
        if folder not in prefixes:  # one relpath per folder: relpath per file cost ~1 s on FER2013's 28k files
            prefixes[folder] = os.path.relpath(folder, root)
        out.append((os.path.join(prefixes[folder], e.name), st.st_size, st.st_mtime_ns))
    return out
