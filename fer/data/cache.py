"""Memory-mapped image cache: decode a source once, then open it in milliseconds.

Layout of one cache entry (a folder named after the source and its fingerprint):
  images.u8    raw uint8 [N,48,48], opened with mmap (never read whole into RAM)
  labels.npy   int64 [N] (-1 = unlabelled)
  splits.npy   int8 [N], codes into info.json["split_names"]
  names.json   the image names, a JSON list (only read when names are needed: predict, audit). JSON, not a line
               per name: a file name may hold a newline, and a split name would move every later row
  skipped.csv  bad inputs skipped under data.on_bad_image=skip (file, reason)
  info.json    counts, the fingerprint and the SHA-256 of every file above; written last
  .lock        held (shared) by every process that has the entry open (fer.data.cache_guard)
The entry is built in a temporary folder and renamed into place, so an interrupted build never looks complete and
two processes building the same entry cannot corrupt each other. Opening an entry checks its files against the
recorded checksums (once per process): a damaged or truncated entry is set aside and built again, with a warning.
Old entries of a source, damaged ones and the folders of killed builds are removed once nobody uses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import secrets
import shutil
import tempfile
import time
from functools import cached_property
from pathlib import Path

import numpy as np

from fer.classes import IMAGE_SIZE
from fer.data import cache_disk, cache_guard
from fer.data.bad_input import BadInputLog
from fer.runtime.images import DEFAULT_MAX_PIXELS
from fer.data.manifest import Manifest
from fer.data.source_base import DataSource
from fer.errors import DataError
from fer.runtime.atomic import publish_folder, reporting_target_faults

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # 2: checksums and the in-use lock; 3: names.json (names.txt split names holding a newline)
_CHECKED_FILES = ["images.u8", "labels.npy", "splits.npy", "names.json"]
_UNUSED_AGE_S = 600  # an entry unused for this long (and not open anywhere) may be removed
_BUILD_GRACE_S = 60  # a temporary folder younger than this may be a builder that has not locked it yet
_PIXELS = IMAGE_SIZE * IMAGE_SIZE
_MAP_BUDGET = 512 * 2**20  # caches up to this size may stay mapped whole (FER2013: 74 MB)
_GATHER_CHUNK = 64  # rows per read when releasing: bounds the mapped pages to ~64 folios


def fingerprint(manifest: Manifest, on_bad_image: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """Hash of everything the cached pixels depend on: file list with sizes and mtimes, settings, format."""
    payload = json.dumps({"format": CACHE_FORMAT, "on_bad_image": on_bad_image, "max_pixels": max_pixels,
                          "source": manifest.identity}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class DamagedCache(DataError):
    """A cache entry whose files do not match what was recorded when it was built."""


_VERIFIED: set[tuple[str, int, int]] = set()  # (entry, inode, mtime) of images.u8 checked in this process


class ImageCache:
    """An opened cache entry. `images` is a read-only [N,48,48] uint8 view of the mmap. While the object lives, the
    entry is marked in use (a shared lock), so no other process removes it."""

    def __init__(self, path: Path, verify: bool = True):
        self.path = Path(path)
        self._lock_fd: int | None = None
        try:
            self._lock_fd = cache_guard.hold(self.path)
            # a clean-up may have removed the entry while we waited for the lock: our lock is then on a file that
            # is no longer the entry's (or the folder is gone), and the entry must be treated as absent
            if os.fstat(self._lock_fd).st_ino != os.stat(self.path / cache_guard.LOCK).st_ino:
                raise FileNotFoundError(self.path / cache_guard.LOCK)
            os.utime(self.path / cache_guard.LOCK)  # last use: old unused entries are removed by age
        except FileNotFoundError:
            self.close()
            raise DataError(f"{self.path}: no such image cache entry") from None
        info_file = self.path / "info.json"
        if not info_file.is_file():
            self.close()
            raise DataError(f"{self.path}: not a complete image cache (no info.json); delete the folder to rebuild")
        self.info = json.loads(info_file.read_text())
        if verify:
            self._verify()
        self.labels: np.ndarray = np.load(self.path / "labels.npy")
        self.split_codes: np.ndarray = np.load(self.path / "splits.npy")
        self.split_names: list[str] = self.info["split_names"]
        n = len(self.labels)
        size = os.path.getsize(self.path / "images.u8")
        if size != n * _PIXELS:
            self.close()
            raise DamagedCache(f"{self.path}/images.u8 has {size} bytes, expected {n * _PIXELS}")
        with open(self.path / "images.u8", "rb") as fh:
            # an empty file cannot be mmapped; keep a zero-size array for empty caches
            self._mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        buf = self._mmap if self._mmap is not None else b""
        self.images: np.ndarray = np.frombuffer(buf, dtype=np.uint8).reshape(n, IMAGE_SIZE, IMAGE_SIZE)

    def _verify(self) -> None:
        recorded = self.info.get("checksums")
        if not recorded:
            self.close()
            raise DamagedCache(f"{self.path}: no checksums recorded (written by an older fer)")
        st = os.stat(self.path / "images.u8")
        key = (str(self.path), st.st_ino, st.st_mtime_ns)
        if key in _VERIFIED:
            return
        bad = cache_guard.damaged_files(self.path, recorded)
        if bad:
            self.close()
            raise DamagedCache(f"{self.path}: {', '.join(bad)} changed since the entry was built")
        _VERIFIED.add(key)

    def close(self) -> None:
        """Mark the entry as no longer used by this object (the mapping stays readable)."""
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def names(self) -> list[str]:
        return json.loads((self.path / "names.json").read_text(encoding="ascii"))

    def split_indices(self, split: str) -> np.ndarray:
        if split not in self.split_names:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self.split_codes == self.split_names.index(split))

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """images[idx] (a copy). For caches bigger than _MAP_BUDGET the rows are read in small chunks and the
        mapping is released after each: with large page-cache folios (recent Linux kernels) one random 2.3 KB read maps
        up to ~2 MB, so 512 random rows of a 1M-image cache would otherwise put ~0.9 GB into our RSS."""
        if self.images.nbytes <= _MAP_BUDGET:
            return self.images[idx]
        out = np.empty((len(idx), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        for start in range(0, len(idx), _GATHER_CHUNK):
            out[start:start + _GATHER_CHUNK] = self.images[idx[start:start + _GATHER_CHUNK]]
            self.release_pages()
        return out

    def release_pages(self) -> None:
        """Drop this process's mapping of pages read so far: they stay in the page cache but leave our RSS.
        Streaming a data set far larger than RAM through the mmap would otherwise grow RSS without bound."""
        if self._mmap is not None:
            self._mmap.madvise(mmap.MADV_DONTNEED)

    def summary(self) -> str:
        counts = ", ".join(f"{s}={int((self.split_codes == i).sum())}" for i, s in enumerate(self.split_names))
        extra = [f"{self.info[k]} {k}" for k in ("resized", "color", "skipped") if self.info.get(k)]
        return f"{len(self)} images ({counts})" + (f"; {', '.join(extra)}" if extra else "")


def _write_entry(manifest: Manifest, tmp: Path, bad: BadInputLog, fp: str, progress: bool) -> dict:
    n = len(manifest)
    decoded = tmp / "decoded.u8"
    images = cache_disk.reserved_map(decoded, n)
    report = manifest.fill(images, bad, progress)
    images.flush()
    keep = report.ok
    split_names = sorted(set(manifest.splits), key=lambda s: (s != "train", s))
    codes = np.array([split_names.index(s) for s in manifest.splits], dtype=np.int8)
    if keep.all():
        del images
        os.rename(decoded, tmp / "images.u8")
    else:  # copy the kept rows in bounded chunks (no full copy in RAM)
        kept_idx = np.flatnonzero(keep)
        with open(tmp / "images.u8", "wb") as fh:
            for start in range(0, len(kept_idx), 65536):
                fh.write(np.ascontiguousarray(images[kept_idx[start:start + 65536]]).tobytes())
        del images
        decoded.unlink()
    np.save(tmp / "labels.npy", manifest.labels[keep])
    np.save(tmp / "splits.npy", codes[keep])
    # ASCII JSON escapes everything (newlines, undecodable bytes kept by os.fsdecode as surrogates): any name
    # comes back as it went in
    (tmp / "names.json").write_text(json.dumps([str(n) for n in np.asarray(manifest.names, dtype=object)[keep]]),
                                    encoding="ascii")
    if len(bad):
        bad.write(tmp / "skipped.csv")
    info = {"format": CACHE_FORMAT, "fingerprint": fp, "n": int(keep.sum()), "split_names": split_names,
            "resized": report.resized, "color": report.color, "skipped": len(bad), "notes": manifest.notes,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "checksums": cache_guard.checksums(tmp, _CHECKED_FILES)}
    (tmp / "info.json").write_text(json.dumps(info, indent=1))  # last: marks the entry complete
    return info


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def _clean(cache_dir: Path, prefix: str, keep: Path) -> None:
    """Remove what nobody uses: the source's other entries (unused for a while), damaged entries set aside, and
    the temporary folders of builds whose builder is gone."""
    old = [p for p in cache_dir.glob(f"{prefix}*") if p != keep and p.is_dir()
           and _older_than(p / cache_guard.LOCK, _UNUSED_AGE_S)]
    cache_guard.remove_unused(old, "old cache entry")
    cache_guard.remove_unused([p for p in cache_dir.glob(".damaged-*") if p.is_dir()], "damaged cache entry")
    cache_guard.remove_unused([p for p in cache_dir.glob(".tmp-*") if p.is_dir() and _older_than(p, _BUILD_GRACE_S)],
                              "folder of an interrupted cache build")


def _open_existing(final: Path) -> ImageCache | None:
    """The complete entry at `final`, or None when there is none (or it was damaged and has been set aside)."""
    if not (final / "info.json").is_file():
        return None
    try:
        return ImageCache(final)
    except DamagedCache as exc:
        log.warning("image cache damaged (%s): building it again", exc)
        try:  # set aside; removed by a later clean-up once no process has it open
            os.rename(final, final.with_name(f".damaged-{final.name}-{secrets.token_hex(3)}"))
        except FileNotFoundError:
            pass  # another process set it aside first
        return None
    except DataError:  # removed between the check and the lock: build it
        return None


def _move_into_place(tmp: Path, final: Path) -> None:
    """Publish the finished build as `final` (flushed to disk, then renamed). Another process may have finished the
    same entry first (theirs is identical: ours is dropped), or left a folder there that is no entry (the remains of
    a removal that raced with a reader): that is set aside, and the rename tried once more."""
    for attempt in range(2):
        try:
            publish_folder(tmp, final)
            return
        except OSError:
            if (final / "info.json").is_file():
                shutil.rmtree(tmp, ignore_errors=True)
                return
            if attempt:
                raise
            try:
                os.rename(final, final.with_name(f".damaged-{final.name}-{secrets.token_hex(3)}"))
            except FileNotFoundError:
                pass  # gone meanwhile: the second rename finds the place free


def open_cache(source: DataSource, cache_dir: str | Path, on_bad_image: str = "error", progress: bool = True,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageCache:
    """Open the cache entry for `source` (fer.data.source_base.DataSource), building it if needed."""
    bad = BadInputLog(on_bad_image, max_pixels)  # checks the settings before any listing or decoding
    manifest: Manifest = source.manifest()
    if len(manifest) == 0:
        raise DataError(f"data source {source.name!r} has no images")
    fp = fingerprint(manifest, on_bad_image, max_pixels)
    cache_dir = Path(cache_dir).expanduser()
    # one folder per (source kind, location); the fingerprint suffix changes whenever the content does
    location = hashlib.sha1(repr((source.name, source.location())).encode()).hexdigest()[:8]
    prefix = f"{source.name}-{location}-"
    final = cache_dir / f"{prefix}{fp[:16]}"
    cache = _open_existing(final)
    if cache is not None:
        return cache
    with reporting_target_faults(f"the image cache in {cache_dir}"):  # full or read-only disk: one line
        cache_dir.mkdir(parents=True, exist_ok=True)
        _clean(cache_dir, prefix, final)  # an interrupted build's folder may be what fills the disk
        cache_disk.check_free_space(cache_dir, len(manifest))
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=cache_dir))
        build_lock = cache_guard.hold(tmp, exclusive=True)  # "being built": clean-ups leave it alone
        started = time.perf_counter()
        try:
            info = _write_entry(manifest, tmp, bad, fp, progress)
            _move_into_place(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            os.close(build_lock)
    log.info("cached %s: %d images in %.1fs at %s", source.name, info["n"], time.perf_counter() - started, final)
    for note in manifest.notes:
        log.warning("%s: %s", source.name, note)
    if info["skipped"]:
        log.warning("%s: skipped %d bad input(s), listed in %s", source.name, info["skipped"], final / "skipped.csv")
    cache = ImageCache(final)
    _clean(cache_dir, prefix, final)
    return cache
