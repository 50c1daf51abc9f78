"""Cache: keyed by a fingerprint of the source, rebuilt when it changes, atomic, opened by mmap."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from fer.data.cache import ImageCache, fingerprint, open_cache
from fer.data.sources import FolderSource, SyntheticSource

from conftest import face_like, write_image


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if p.is_dir())


def test_second_open_reuses_the_entry_without_decoding(folder_dataset, tmp_path, monkeypatch):
    first = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    import fer.data.sources as sources

    monkeypatch.setattr(sources, "decode_files", lambda *a, **k: pytest.fail("decoded again"))
    again = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    assert again.path == first.path and np.array_equal(again.images, first.images)


def test_images_are_a_read_only_mmap_not_a_copy(folder_dataset, tmp_path):
    cache = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    assert isinstance(cache.images.base, (mmap.mmap, memoryview)) or not cache.images.flags.owndata
    assert not cache.images.flags.writeable
    assert os.path.getsize(cache.path / "images.u8") == len(cache) * 48 * 48


@pytest.mark.parametrize("change", ["add", "modify", "remove", "setting"])
def test_fingerprint_changes_with_the_source(folder_dataset, tmp_path, change):
    src = FolderSource(str(folder_dataset))
    before = fingerprint(src.manifest(), "error")
    target = folder_dataset / "train" / "sad" / "big.png"
    if change == "add":
        write_image(folder_dataset / "train" / "happy" / "new.png", face_like(np.random.default_rng(5), 3))
    elif change == "modify":
        os.utime(target, ns=(0, target.stat().st_mtime_ns + 10**9))
    elif change == "remove":
        target.unlink()
    after = fingerprint(src.manifest(), "skip" if change == "setting" else "error")
    assert after != before


def test_changed_source_rebuilds_and_replaces_the_old_entry(folder_dataset, tmp_path):
    old = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    (folder_dataset / "train" / "sad" / "big.png").unlink()
    new = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    assert new.path != old.path and len(new) == len(old) - 1
    assert _entries(tmp_path / "c") == [new.path]  # stale entry of the same source removed
    assert old.images.shape[0] == len(old)  # an open reader keeps its mapping


def test_interrupted_build_never_looks_complete(tmp_path, monkeypatch):
    src = SyntheticSource(n_train=70, n_test=14)
    manifest = src.manifest()

    def dying_fill(out, bad, progress):
        out[:10] = 1
        raise KeyboardInterrupt  # e.g. Ctrl-C half way

    monkeypatch.setattr(SyntheticSource, "manifest", lambda self: manifest.__class__(
        **{**manifest.__dict__, "fill": dying_fill}))
    with pytest.raises(KeyboardInterrupt):
        open_cache(src, tmp_path / "c", progress=False)
    assert _entries(tmp_path / "c") == []  # no entry, no leftover temporary folder
    monkeypatch.undo()
    cache = open_cache(src, tmp_path / "c", progress=False)
    assert len(cache) == 84 and (cache.path / "info.json").is_file()


def test_incomplete_folder_is_refused(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "images.u8").write_bytes(b"\0" * 2304)
    with pytest.raises(ValueError, match="not a complete image cache"):
        ImageCache(tmp_path / "half")


def test_release_pages_keeps_data_readable(tmp_path):
    cache = open_cache(SyntheticSource(n_train=70, n_test=14), tmp_path / "c", progress=False)
    before = cache.images[5].copy()
    cache.release_pages()
    assert np.array_equal(cache.images[5], before)
