"""Writers facing what a disk can do to them: full, read-only, a writer killed half-way, another writer at the same
target. Each ends in one line naming the target, leaves nothing behind, and keeps the previous file whole.

The full and read-only disks are real: small tmpfs mounts in a private mount namespace (`unshare -rm`, no root
needed where user namespaces are on), where the kernel says ENOSPC and EROFS itself. Where namespaces are off, the
same faults are raised by a stand-in for the failing call (the tests after the mount test)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fer.errors import DataError, UserError
from fer.runtime import atomic
from fer.runtime.table import write_csv_atomic

ROOT = Path(__file__).resolve().parents[1]


def _namespaces() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


# runs inside the namespace: argv = full (1 MB tmpfs), readonly (read-only tmpfs); one "ok <case>" per case
_ON_SMALL_DISKS = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, {root!r})
    from fer.errors import DataError, UserError
    from fer.data import cache_disk
    from fer.data.cache import open_cache
    from fer.data.sources import SyntheticSource
    from fer.runtime.table import write_csv_atomic
    from fer.runtime.video import _AnnotatedVideo

    full, readonly = Path(sys.argv[1]), Path(sys.argv[2])

    def refused(kind, pattern, call):
        try:
            call()
        except kind as exc:
            assert pattern in str(exc) and "\\n" not in str(exc), str(exc)
        else:
            raise AssertionError(f"no {{kind.__name__}} ({{pattern}})")
        left = sorted(p.name for p in full.rglob("*") if p.name not in ("before.csv", ".lock"))
        assert left == [], left

    source = SyntheticSource(n_train=600, n_test=0)  # 1.4 MB of pixels: more than the disk holds
    refused(DataError, "not enough free space for the image cache", lambda: open_cache(source, full, progress=False))
    print("ok cache refused up front", flush=True)

    cache_disk.check_free_space = lambda *a: None  # as if the disk filled up after the check
    refused(UserError, "cannot write the image cache in " + str(full) + ": no space left on the device",
            lambda: open_cache(source, full, progress=False))
    print("ok cache build stopped by its reservation, no SIGBUS", flush=True)

    write_csv_atomic(full / "before.csv", ["image", "label"], [["a.jpg", 3]])
    before = (full / "before.csv").read_bytes()
    rows = ([f"face_{{i:07d}}.jpg", i % 7] for i in range(200_000))  # ~4 MB
    refused(UserError, "cannot write output=" + str(full / "before.csv") + ": no space left",
            lambda: write_csv_atomic(full / "before.csv", ["image", "label"], rows))
    assert (full / "before.csv").read_bytes() == before
    print("ok csv kept the previous file", flush=True)

    def video():
        writer = _AnnotatedVideo(full / "drawn.mp4", 25, (320, 240))
        noise = np.random.default_rng(0)
        for _ in range(300):
            writer.write(noise.integers(0, 255, (240, 320, 3), dtype=np.uint8))
        writer.finish()
    refused(UserError, "cannot write annotate_video=" + str(full / "drawn.mp4") + ": only ", video)
    print("ok video counted its frames", flush=True)

    for what, call in (("output=", lambda: write_csv_atomic(readonly / "out.csv", ["image"], [["a.jpg"]])),
                       ("the image cache in", lambda: open_cache(source, readonly / "cache", progress=False)),
                       ("annotate_video=", lambda: _AnnotatedVideo(readonly / "v.mp4", 25, (64, 64)))):
        try:
            call()
        except UserError as exc:
            assert what in str(exc) and "read-only" in str(exc), str(exc)
        else:
            raise AssertionError(what)
    print("ok read-only", flush=True)
""")


@pytest.mark.skipif(not _namespaces(), reason="no user namespaces here (unshare -rm): the stand-in tests below cover "
                                              "the same faults")
def test_full_and_read_only_disks_are_one_line_and_leave_nothing(tmp_path):
    full, readonly = tmp_path / "full", tmp_path / "readonly"
    full.mkdir()
    readonly.mkdir()
    script = tmp_path / "on_small_disks.py"
    script.write_text(_ON_SMALL_DISKS.format(root=str(ROOT)))
    mount = ('mount -t tmpfs -o size=1m tmpfs "$1" && mount -t tmpfs -o ro,size=1m tmpfs "$2" && '
             'exec "$3" "$4" "$1" "$2"')
    done = subprocess.run(["unshare", "-rm", "sh", "-c", mount, "sh", str(full), str(readonly), sys.executable,
                           str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # a SIGBUS would be returncode -7
    assert done.stdout.count("ok ") == 5, done.stdout
    assert "WARN" not in done.stderr  # OpenCV's per-frame "Failed to write frame" is not shown


def test_a_reservation_that_fails_is_one_line_and_removes_the_build(tmp_path, monkeypatch):
    from fer.data import cache_disk
    from fer.data.cache import open_cache
    from fer.data.sources import SyntheticSource

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(UserError, match=f"cannot write the image cache in {tmp_path}: no space left on the device"):
        open_cache(SyntheticSource(n_train=50, n_test=0), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(cache_disk.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(DataError, match="50 images need up to 1 MB, 0 MB are free"):
        open_cache(SyntheticSource(n_train=50, n_test=0), tmp_path, progress=False)


@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_csv_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, fault):
    (tmp_path / "out.csv").write_text("old\n")

    def failing_mkstemp(*args, **kwargs):
        raise OSError(fault, os.strerror(fault), str(tmp_path / ".out.csv.x.tmp.csv"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", failing_mkstemp)
    with pytest.raises(UserError, match=f"cannot write output={tmp_path / 'out.csv'}: "):
        write_csv_atomic(tmp_path / "out.csv", ["image"], [["a.jpg"]])
    assert (tmp_path / "out.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write_a_live_ones_is_kept(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from fer.runtime.atomic import Staged
        staged = Staged({str(target)!r})
        staged.tmp.write_bytes(b"half a model")
        print(staged.tmp, flush=True)
        os.kill(os.getpid(), 9)
    """)], capture_output=True, text=True)
    assert killed.returncode == -9
    left = Path(killed.stdout.strip())
    assert left.exists() and left.name.startswith(".model.onnx.")
    live = atomic.Staged(target)  # another writer at work on the same target
    monkeypatch.setattr(atomic, "_CREATION_GRACE_S", 0.0)
    os.utime(left, (time.time() - 60, time.time() - 60))
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"model")
    assert target.read_bytes() == b"model"
    assert not left.exists()  # the killed writer's
    assert live.tmp.exists()  # the live writer's
    live.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_any_other_writer_on_a_full_disk_is_one_line_from_the_scripts(capsys):
    """The scripts' safety net (fer.cli.friendly_errors): a report, a plot or an audit file that meets a full disk
    is one line and exit code 2; an unrelated OSError is not hidden."""
    from fer.cli import friendly_errors

    with pytest.raises(SystemExit) as exited, friendly_errors():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/reports/confusion.png")
    assert exited.value.code == 2
    assert capsys.readouterr().err == ("error: cannot write /runs/x/reports/confusion.png: no space left on the "
                                       "device (free some space, or choose another place)\n")
    with pytest.raises(ConnectionResetError), friendly_errors():
        raise ConnectionResetError(errno.ECONNRESET, "reset")
