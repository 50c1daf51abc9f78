"""Cache: keyed by a fingerprint of the source, rebuilt when it changes, atomic, opened by mmap."""

from __future__ import annotations

import mmap
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fer.data.cache import ImageCache, fingerprint, open_cache
from fer.data.sources import ChallengeSource, Fer2013CsvSource, FolderSource, SyntheticSource

from conftest import face_like, write_image


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if p.is_dir())


def test_second_open_reuses_the_entry_without_decoding(folder_dataset, tmp_path, monkeypatch):
    first = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    import fer.data.manifest as manifest

    monkeypatch.setattr(manifest, "decode_files", lambda *a, **k: pytest.fail("decoded again"))
    again = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    assert again.path == first.path and np.array_equal(again.images, first.images)


def test_file_names_with_newlines_and_odd_bytes_keep_their_rows(tmp_path):
    """A file name may hold a newline (or bytes that are not UTF-8): each name comes back whole and in its row, so
    no prediction moves to the next file's row (names were once stored one per line)."""
    from fer.data.sources import ImageListSource

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["a.png", "t0\n03.png", "t019.png", os.fsdecode(b"z\xff.png")]
    import cv2

    for i, name in enumerate(names):
        pixels = np.full((48, 48), 40 * i, np.uint8) + rng.integers(0, 5, (48, 48), np.uint8)
        (folder / name).write_bytes(cv2.imencode(".png", pixels)[1].tobytes())
    cache = open_cache(ImageListSource([str(folder)]), tmp_path / "c", progress=False)
    assert len(cache.names) == len(cache) == 4 and sorted(Path(n).name for n in cache.names) == sorted(names)
    for name, image in zip(cache.names, cache.images):
        assert abs(int(image.mean()) - 40 * names.index(Path(name).name)) <= 5, name


def test_images_are_a_read_only_mmap_not_a_copy(folder_dataset, tmp_path):
    cache = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    # the pixels are the mapping's own bytes: a copy (np.fromfile, np.load) shares no memory with it
    assert isinstance(cache._mmap, mmap.mmap)
    assert np.shares_memory(cache.images, np.frombuffer(cache._mmap, dtype=np.uint8))
    assert not cache.images.flags.writeable
    assert os.path.getsize(cache.path / "images.u8") == len(cache) * 48 * 48


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.mark.parametrize("change", ["add", "timestamp", "content", "rename", "remove", "setting"])
def test_fingerprint_changes_with_a_folder_source(folder_dataset, tmp_path, change):
    src = FolderSource(str(folder_dataset))
    before = fingerprint(src.manifest(), "error")
    target = folder_dataset / "train" / "sad" / "big.png"
    if change == "add":
        write_image(folder_dataset / "train" / "happy" / "new.png", face_like(np.random.default_rng(5), 3))
    elif change == "timestamp":  # same bytes, newer file: rebuilt (cheaper than reading every file to compare)
        _touch_later(target)
    elif change == "content":  # an image replaced by another of a different size
        write_image(target, face_like(np.random.default_rng(6), 4))
    elif change == "rename":
        target.rename(target.with_name("big2.png"))
    elif change == "remove":
        target.unlink()
    after = fingerprint(src.manifest(), "skip" if change == "setting" else "error")
    assert after != before
    if change != "setting":  # and nothing else moves it: the same source twice gives the same fingerprint
        assert fingerprint(src.manifest(), "error") == after


@pytest.mark.parametrize("change", ["label", "row_removed", "timestamp", "test_image"])
def test_fingerprint_changes_with_the_challenge_csv_and_test_folder(challenge_dataset, change):
    src = ChallengeSource(str(challenge_dataset))
    before = fingerprint(src.manifest(), "error")
    csv_path = challenge_dataset / "challengeA_train.csv"
    lines = csv_path.read_text().splitlines()
    if change == "label":  # same size, one label edited: 0 -> 1
        lines[1] = lines[1].replace(",0", ",1")
        csv_path.write_text("\n".join(lines) + "\n")
        _touch_later(csv_path)  # the edit may land in the same mtime tick as the fixture's write
    elif change == "row_removed":
        csv_path.write_text("\n".join(lines[:-1]) + "\n")
    elif change == "timestamp":
        _touch_later(csv_path)
    elif change == "test_image":
        write_image(challenge_dataset / "images_test" / "extra.png", face_like(np.random.default_rng(7), 1))
    assert fingerprint(src.manifest(), "error") != before


@pytest.mark.parametrize("change", ["pixel", "usage", "timestamp"])
def test_fingerprint_changes_with_the_fer2013_csv(fer_csv, change):
    src = Fer2013CsvSource(str(fer_csv))
    before = fingerprint(src.manifest(), "error")
    lines = fer_csv.read_text().splitlines()
    if change == "pixel":
        emotion, pixels, usage = lines[1].split(",")
        lines[1] = ",".join([emotion, "7" + pixels[1:] if pixels[0] != "7" else "8" + pixels[1:], usage])
        fer_csv.write_text("\n".join(lines) + "\n")
        _touch_later(fer_csv)
    elif change == "usage":
        lines[1] = lines[1].replace("Training", "PublicTest")
        fer_csv.write_text("\n".join(lines) + "\n")
    elif change == "timestamp":
        _touch_later(fer_csv)
    assert fingerprint(src.manifest(), "error") != before


def test_fingerprint_follows_the_synthetic_generator_code_and_settings(monkeypatch, tmp_path):
    import fer.data.synthetic as generator

    src = SyntheticSource(n_train=14, n_test=7)
    before = fingerprint(src.manifest(), "error")
    assert fingerprint(SyntheticSource(n_train=14, n_test=7, nuisance=0.5).manifest(), "error") != before
    assert fingerprint(SyntheticSource(n_train=14, n_test=7, seed=1).manifest(), "error") != before
    # an edited drawing routine (a copy of the module with one more line) is a different data set
    edited = tmp_path / "synthetic.py"
    edited.write_text(Path(generator.__file__).read_text() + "\n# edited\n")
    monkeypatch.setattr(generator, "__file__", str(edited))
    assert fingerprint(src.manifest(), "error") != before


def _age(entry: Path, seconds: float = 3600) -> None:
    """Make an entry look unused for `seconds` (its lock file's mtime is its last use)."""
    lock = entry / ".lock"
    t = lock.stat().st_mtime - seconds
    os.utime(lock, (t, t))


def test_changed_source_rebuilds_and_old_entry_goes_once_unused(folder_dataset, tmp_path):
    old = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    (folder_dataset / "train" / "sad" / "big.png").unlink()
    _age(old.path)
    new = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    assert new.path != old.path and len(new) == len(old) - 1
    assert _entries(tmp_path / "c") == sorted([old.path, new.path])  # still open here: kept
    assert old.names[0] and old.images.shape[0] == len(old)  # and fully readable
    old.close()
    shutil.copy(folder_dataset / "train" / "sad" / "train_4_0.png", folder_dataset / "train" / "sad" / "again.png")
    newest = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    # the first entry was unused and old: removed; the second is open (and recent): kept
    assert _entries(tmp_path / "c") == sorted([new.path, newest.path])


def test_parallel_runs_with_different_data_settings_keep_each_others_entries(tmp_path):
    """Run A reads its entry while run B, with another data setting of the same source, builds and cleans up."""
    a = open_cache(SyntheticSource(n_train=70, n_test=14), tmp_path / "c", progress=False)
    _age(a.path)  # even an entry unused "for an hour" stays while it is open
    b = open_cache(SyntheticSource(n_train=84, n_test=14), tmp_path / "c", progress=False)
    assert a.path.is_dir() and b.path.is_dir() and a.path != b.path
    assert len(a.names) == 84 and a.names[-1] == "synthetic/test/0000013.png"  # names.json is read lazily
    # an entry used a moment ago stays too, open or not (the moment between a build and its first reader)
    b.close()
    c = open_cache(SyntheticSource(n_train=98, n_test=14), tmp_path / "c", progress=False)
    assert b.path.is_dir() and len(_entries(tmp_path / "c")) == 3 and len(c) == 112


@pytest.mark.parametrize("damage", ["pixels", "truncated", "labels"])
def test_damaged_entry_is_rebuilt_with_a_warning(damage, tmp_path, caplog):
    src = SyntheticSource(n_train=70, n_test=14)
    first = open_cache(src, tmp_path / "c", progress=False)
    expected, path = np.array(first.images), first.path
    first.close()
    del first
    import fer.data.cache as cache_module

    cache_module._VERIFIED.clear()  # as a new process would: it checks the entry when it opens it
    if damage == "pixels":  # same size, other bytes: only the checksum can tell
        with open(path / "images.u8", "r+b") as fh:
            fh.seek(1000)
            fh.write(b"\xff" * 64)
    elif damage == "truncated":
        os.truncate(path / "images.u8", 48 * 48 * 10)
    else:
        np.save(path / "labels.npy", np.zeros(84, np.int64))
    with caplog.at_level("WARNING"):
        again = open_cache(src, tmp_path / "c", progress=False)
    assert "image cache damaged" in caplog.text and "building it again" in caplog.text
    assert np.array_equal(again.images, expected) and again.path == path
    assert (again.labels == SyntheticSource(n_train=70, n_test=14).manifest().labels).all()
    assert [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".damaged-")] == []  # unused: removed


def test_entry_removed_while_waiting_for_its_lock_counts_as_absent(tmp_path, monkeypatch):
    """A clean-up removes an entry (holding its lock) just as a reader opens the lock file: the reader's lock is then
    on a file that is no longer the entry's. It must not use the entry; open_cache builds it again."""
    import fer.data.cache as cache_module
    from fer.errors import DataError

    src = SyntheticSource(n_train=70, n_test=14)
    first = open_cache(src, tmp_path / "c", progress=False)
    path, expected = first.path, np.array(first.images)
    first.close()
    hold = cache_module.cache_guard.hold

    def hold_then_lose_the_race(folder, exclusive=False, wait=True):
        fd = hold(folder, exclusive, wait)
        if folder == path:  # what the cleaner did meanwhile: removed the entry, and a reader made a new lock file
            shutil.rmtree(path)
            path.mkdir()
            (path / ".lock").touch()
        return fd

    monkeypatch.setattr(cache_module.cache_guard, "hold", hold_then_lose_the_race)
    with pytest.raises(DataError, match="no such image cache entry"):
        ImageCache(path)
    monkeypatch.undo()
    # the remains (a folder with only a lock file) are set aside, and the entry built again in its place
    again = open_cache(src, tmp_path / "c", progress=False)
    assert again.path == path and np.array_equal(again.images, expected)


def test_killed_build_leaves_a_folder_that_the_next_build_removes(tmp_path):
    """kill -9 in the middle of a build: its temporary folder stays, unlocked; the next build of any entry removes
    it (once past the grace period that protects a build that has not locked its folder yet)."""
    import signal
    import subprocess
    import sys
    import time

    cache_dir = tmp_path / "c"
    script = ("import sys, time; sys.path.insert(0, sys.argv[1])\n"
              "from fer.data.cache import open_cache\nfrom fer.data.sources import SyntheticSource\n"
              "class Slow(SyntheticSource):\n"
              "    def manifest(self):\n"
              "        m = super().manifest(); fill = m.fill\n"
              "        m.fill = lambda out, bad, progress: (time.sleep(60), fill(out, bad, progress))[1]\n"
              "        return m\n"
              "open_cache(Slow(n_train=7, n_test=7), sys.argv[2], progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).resolve().parents[1]), str(cache_dir)])
    try:
        deadline = time.monotonic() + 60
        while not list(cache_dir.glob(".tmp-*/.lock")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (building,) = cache_dir.glob(".tmp-*")
        # while the builder lives, its folder is locked: a clean-up leaves it
        os.utime(building, (0, 0))
        open_cache(SyntheticSource(n_train=14, n_test=7), cache_dir, progress=False)
        assert building.is_dir()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert building.is_dir()  # nobody cleaned up after the killed builder
    os.utime(building, (0, 0))
    open_cache(SyntheticSource(n_train=21, n_test=7), cache_dir, progress=False)
    assert not building.exists()


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


def _mapped_rss_kb(path: Path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    import re

    header = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if header.match(line):
            inside = line.rstrip().endswith(" " + str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def _raw_cache_entry(folder: Path, n: int, seed: int = 0) -> Path:
    """A cache entry written directly (random pixels): big enough to measure, no decoding."""
    import json

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rng.integers(0, 256, (n, 48, 48), dtype=np.uint8).tofile(folder / "images.u8")
    np.save(folder / "labels.npy", rng.integers(0, 7, n))
    np.save(folder / "splits.npy", np.zeros(n, np.int8))
    (folder / "names.json").write_text(json.dumps([f"{i}.png" for i in range(n)]))
    (folder / "info.json").write_text(json.dumps({"n": n, "split_names": ["train"]}))
    return folder


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="needs Linux /proc/self/smaps")
def test_big_cache_gather_is_chunked_and_leaves_nothing_mapped(tmp_path, monkeypatch):
    """Caches over the mapping budget are read in chunks with the mapping released after each: a random pass over
    every row leaves (almost) none of the file resident in this process, and the rows are the right ones."""
    import fer.data.cache as cache_module

    n = 20_000  # 46 MB
    cache = ImageCache(_raw_cache_entry(tmp_path / "big", n), verify=False)  # no checksums in this hand-made entry
    data = cache.path / "images.u8"
    monkeypatch.setattr(cache_module, "_MAP_BUDGET", 2**20)  # as if the cache were far bigger than 512 MB
    order = np.random.default_rng(1).permutation(n)
    cache.release_pages()
    for start in range(0, n, 512):  # one epoch of batches, as BatchStream reads them
        cache.gather(np.sort(order[start:start + 512]))
    assert _mapped_rss_kb(data) < 1024, _mapped_rss_kb(data)
    # the same pass without the budget keeps the whole file mapped: the check above can see the difference
    monkeypatch.setattr(cache_module, "_MAP_BUDGET", 2**40)
    for start in range(0, n, 512):
        cache.gather(np.sort(order[start:start + 512]))
    assert _mapped_rss_kb(data) > 30 * 1024
    monkeypatch.setattr(cache_module, "_MAP_BUDGET", 2**20)
    idx = np.sort(order[:1000])
    expected = np.fromfile(data, dtype=np.uint8).reshape(n, 48, 48)[idx]
    assert np.array_equal(cache.gather(idx), expected)


def test_an_entry_is_flushed_to_disk_before_it_is_published(folder_dataset, tmp_path, monkeypatch):
    """The build folder's files and the folder itself are fsynced before the rename that makes the entry visible
    (fer.runtime.atomic.publish_folder): after a power loss the entry is whole or absent, never renamed but empty."""
    import fer.runtime.atomic as atomic

    events = []
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                        real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "rename", lambda a, b: (events.append(("rename", str(a))), real_rename(a, b))[1])
    cache = open_cache(FolderSource(str(folder_dataset)), tmp_path / "c", progress=False)
    build = events[-1][1]
    assert events[-1] == ("rename", build) and events[-2] == build  # the folder itself, then the rename
    synced = [Path(e).name for e in events[:-2] if isinstance(e, str) and Path(e).parent == Path(build)]
    assert sorted(synced) == sorted(p.name for p in cache.path.iterdir() if p.is_file())
