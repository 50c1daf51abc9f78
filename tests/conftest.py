"""Shared fixtures: small data sets generated in tmp_path, in every supported layout."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.classes import CLASS_NAMES
from fer.cli import register_resolvers, silence_library_noise

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FER_ROOT", str(ROOT))
register_resolvers()  # what each entry point's setup_process does; the tests compose fer's configs themselves
SHARED_FER2013 = Path(os.environ.get("FER_SHARED_DIR") or ROOT.parent / "shared") / "fer2013"
# .ci/run sets FER_CI=1: there the real data, Chromium and everything else a test may need is present, so a test
# that would skip (data absent, a tool missing) fails instead of passing unnoticed
IN_CI = os.environ.get("FER_CI", "") not in ("", "0")


def pytest_sessionstart(session):
    """The libraries' noise dropped, as each entry point's setup_process drops it (the tests call fer's flows
    themselves). Here, not at import: pytest undoes the warning filters a conftest sets while it is imported."""
    silence_library_noise()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under FER_CI=1, where every test must run: {reason}"


@pytest.fixture
def shared_fer2013() -> Path:
    """../shared/fer2013 (FER_SHARED_DIR moves ../shared); tests that use it skip where it is absent (not in CI)."""
    if not SHARED_FER2013.is_dir():
        pytest.skip(f"{SHARED_FER2013} not present")
    return SHARED_FER2013


@pytest.fixture
def shared_challenge_a() -> Path:
    """../shared/challengeA (the seed's layout; its images_test is for prediction only), skipped where absent."""
    root = SHARED_FER2013.parent / "challengeA"
    if not (root / "images_test").is_dir():
        pytest.skip(f"{root / 'images_test'} not present")
    return root


def face_like(rng: np.random.Generator, label: int) -> np.ndarray:
    """A random 48x48 uint8 texture with a class-dependent bright bar, so labels are learnable."""
    img = rng.integers(0, 120, size=(48, 48), dtype=np.uint8)
    img[label * 6:label * 6 + 6, :] = 230
    return img


def write_image(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    """<root>/<split>/<Class>/*.jpg with mixed-case class folders, one 3-channel and one odd-size image."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fer"
    for split, per_class in (("train", 6), ("PublicTest", 2)):
        for c, name in enumerate(CLASS_NAMES):
            folder = name.upper() if c % 2 else name
            for i in range(per_class):
                write_image(root / split / folder / f"{split}_{c}_{i}.png", face_like(rng, c))
    write_image(root / "train" / "happy" / "color.jpg", cv2.cvtColor(face_like(rng, 3), cv2.COLOR_GRAY2BGR))
    write_image(root / "train" / "sad" / "big.png", cv2.resize(face_like(rng, 4), (96, 80)))
    return root


@pytest.fixture
def challenge_dataset(tmp_path: Path) -> Path:
    """images_train/ + challengeA_train.csv (own header names, names as labels) + unlabelled images_test/."""
    rng = np.random.default_rng(1)
    root = tmp_path / "challenge"
    rows = []
    for i in range(28):
        label = i % 7
        name = f"train_{i:03d}.jpg"
        write_image(root / "images_train" / name, cv2.cvtColor(face_like(rng, label), cv2.COLOR_GRAY2BGR))
        rows.append(f"{name},{CLASS_NAMES[label] if i % 2 else label}")
    (root / "challengeA_train.csv").write_text("Image_ID,Emotion\n" + "\n".join(rows) + "\n")
    for i in range(5):
        write_image(root / "images_test" / f"test_{i:03d}.jpg", face_like(rng, i % 7))
    write_image(root / "images_test" / "test_odd.jpg", cv2.resize(face_like(rng, 2), (64, 64)))
    return root


@pytest.fixture
def fer_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    lines = ["emotion,pixels,Usage"]
    for i in range(21):
        usage = ("Training", "PublicTest", "PrivateTest")[i % 3]
        lines.append(f"{i % 7},{' '.join(map(str, face_like(rng, i % 7).ravel()))},{usage}")
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One thread for torch, OpenMP and BLAS: on a shared, loaded machine two spinning threads are 2x slower."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid grayscale PNG of side x side black pixels: ~0.4 MB on disk, side^2 bytes once decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, parts = zlib.compressobj(9), []
    row = bytes(side + 1)  # filter byte 0 + a row of zeros
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path
