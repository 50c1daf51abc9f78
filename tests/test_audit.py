"""fer.audit: planted exact / near duplicates, label conflicts and blank images are found exactly, and
data.dedup=train drops exactly the planted training copies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fer.data.duplicates import drop_train_duplicates, find_duplicates
from fer.data.duplicates.hamming import hamming_pairs
from fer.data.duplicates.hashes import exact_groups, perceptual_hashes
from fer.audit.quality import assess_quality, face_space_residual
from fer.audit.report import AuditSettings, run_audit
from fer.classes import CLASS_NAMES
from fer.data.cache import open_cache
from fer.data.sources import FolderSource

ROOT = Path(__file__).resolve().parents[1]


def texture(rng: np.random.Generator) -> np.ndarray:
    """A smooth random 48x48 texture (random 6x6 field, bicubic upscale) plus fine noise: every one has its own
    low-frequency structure, so unrelated fixtures are far apart in the perceptual hash."""
    field = rng.normal(size=(6, 6)).astype(np.float32)
    img = cv2.resize(field, (48, 48), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6) * 180 + 40
    img += rng.normal(0, 4, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def shifted(img: np.ndarray, dy: int, dx: int, brightness: int = 0) -> np.ndarray:
    """img moved by (dy, dx) pixels (edges replicated), optionally brighter."""
    pad = np.pad(img, 2, mode="edge")
    out = pad[2 - dy:2 - dy + 48, 2 - dx:2 - dx + 48].astype(np.int16) + brightness
    return np.clip(out, 0, 255).astype(np.uint8)


PLANTED_EXACT = [  # groups of file names (relative to the root)
    {"train/angry/t00.png", "train/angry/t00_copy.png"},  # within train, same label
    {"train/disgust/t01.png", "publictest/disgust/t01_leak.png"},  # across splits, same label
    {"train/fear/t02.png", "train/happy/t02_relabelled.png"},  # within train, conflicting labels
    {"train/happy/t03.png", "publictest/sad/t03_leak_relabelled.png"},  # across splits, conflicting labels
]
PLANTED_NEAR = [  # pairs: 1-2 px shifts (one also brighter)
    {"train/sad/t04.png", "publictest/sad/t04_shift_1_0.png"},
    {"train/surprise/t05.png", "train/surprise/t05_shift_2_-1.png"},
    {"publictest/neutral/p00.png", "train/neutral/p00_shift_0_2_bright.png"},
]
PLANTED_BLANK = {"train/neutral/blank_black.png", "publictest/angry/blank_grey.png"}


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """fer2013 folder layout (PNG: lossless) with 40 + 14 unrelated textures and the planted findings."""
    rng = np.random.default_rng(7)
    root = tmp_path / "fer"
    base = {}

    def put(rel: str, img: np.ndarray) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), img)

    for i in range(40):
        rel = f"train/{CLASS_NAMES[i % 7]}/t{i:02d}.png"
        base[rel] = texture(rng)
        put(rel, base[rel])
    for i in range(14):
        rel = f"publictest/{CLASS_NAMES[(i + 6) % 7]}/p{i:02d}.png"
        base[rel] = texture(rng)
        put(rel, base[rel])
    for group in PLANTED_EXACT:
        original = next(r for r in sorted(group) if r in base)
        for rel in group - {original}:
            put(rel, base[original])
    put("publictest/sad/t04_shift_1_0.png", shifted(base["train/sad/t04.png"], 1, 0))
    put("train/surprise/t05_shift_2_-1.png", shifted(base["train/surprise/t05.png"], 2, -1))
    put("train/neutral/p00_shift_0_2_bright.png", shifted(base["publictest/neutral/p00.png"], 0, 2, 12))
    put("train/neutral/blank_black.png", np.zeros((48, 48), np.uint8))
    put("publictest/angry/blank_grey.png", np.full((48, 48), 128, np.uint8))
    return root


@pytest.fixture
def cache(planted: Path, tmp_path: Path):
    return open_cache(FolderSource(root=str(planted)), tmp_path / "cache", progress=False)


def _names(cache, indices) -> set[str]:
    return {cache.names[i] for i in indices}


# ---- building blocks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0, 2, 6, 11])
def test_hamming_pairs_matches_brute_force(threshold):
    rng = np.random.default_rng(threshold)
    refs = rng.integers(0, 2**63, 3000, dtype=np.uint64)
    queries = rng.integers(0, 2**63, 700, dtype=np.uint64)
    flips = rng.integers(0, 63, size=(200, 8)).astype(np.uint64)
    for k in range(200):  # plant codes 0..7 bits away (some flips repeat: fewer bits)
        queries[k] = refs[k * 7]
        for bit in flips[k, : k % 8]:
            queries[k] ^= np.uint64(1) << bit
    qi, ri, dist = hamming_pairs(queries, refs, threshold)
    brute = np.bitwise_count(queries[:, None] ^ refs[None, :])
    bq, br = np.nonzero(brute <= threshold)
    assert set(zip(qi.tolist(), ri.tolist())) == set(zip(bq.tolist(), br.tolist()))
    assert (dist == brute[qi, ri]).all() and len(qi) >= 1


def test_exact_groups_numbered_by_first_member():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(6, 48, 48), dtype=np.uint8)
    imgs[3] = imgs[1]
    imgs[5] = imgs[0]
    imgs[4] = imgs[1]
    assert exact_groups(imgs).tolist() == [0, 1, -1, 1, 1, 0]


def test_shifted_copies_hash_to_distance_zero_and_unrelated_far():
    rng = np.random.default_rng(1)
    base = np.stack([texture(rng) for _ in range(30)])
    moved = np.stack([shifted(base[i], dy, dx) for i, (dy, dx) in
                      enumerate([(1, 0), (0, 1), (2, 2), (-2, 1), (-1, -2), (0, -2)] * 5)])
    center, shifted_codes = perceptual_hashes(np.concatenate([base, moved]))
    # the copy's central code equals one of the original's shifted codes (or its central code)
    codes = np.concatenate([center[:30, None], shifted_codes[:30]], axis=1)
    copy_codes = np.concatenate([center[30:, None], shifted_codes[30:]], axis=1)
    best = np.minimum(np.bitwise_count(codes ^ center[30:, None]).min(1),
                      np.bitwise_count(copy_codes ^ center[:30, None]).min(1))
    assert best.max() <= 2
    unrelated = np.bitwise_count(center[:30, None] ^ center[None, :30])[np.triu_indices(30, 1)]
    assert unrelated.min() > 10


# ---- the planted fixture ---------------------------------------------------------------------------------
def test_find_duplicates_finds_exactly_what_was_planted(cache):
    dup = find_duplicates(cache.images)
    found_groups = [_names(cache, g) for g in dup.groups()]
    assert sorted(map(sorted, found_groups)) == sorted(map(sorted, PLANTED_EXACT))
    found_near = [_names(cache, (a, b)) for a, b in zip(dup.near_a, dup.near_b)]
    assert sorted(map(sorted, found_near)) == sorted(map(sorted, PLANTED_NEAR))
    assert (dup.near_distance <= 3).all()


def _brute_force_near_pairs(x: np.ndarray, threshold: int) -> set[tuple[int, int, int]]:
    """Every pair of hashable images within the threshold (smallest distance over the shifts, either way), exact
    copies of each other excepted: O(n^2), as an independent reference. A copy takes the codes of the first image
    with its bytes (the codes of identical images can differ in a bit: the float GEMM rounds a row by where it sits
    in the batch; the finder codes a group once)."""
    from fer.data.duplicates.hashes import pixel_std

    hashed = np.flatnonzero(pixel_std(x) >= 2.0)
    center, shifted = perceptual_hashes(x[hashed])
    first_with: dict[bytes, int] = {}
    like = np.array([first_with.setdefault(x[a].tobytes(), i) for i, a in enumerate(hashed)])
    center, shifted = center[like], shifted[like]
    codes = np.concatenate([center[:, None], shifted], axis=1)
    out = set()
    for i in range(len(hashed)):
        for j in range(i + 1, len(hashed)):
            a, b = hashed[i], hashed[j]
            if like[i] == like[j]:  # exact copies of each other
                continue
            d = min(int(np.bitwise_count(center[i] ^ codes[j]).min()),
                    int(np.bitwise_count(center[j] ^ codes[i]).min()))
            if d <= threshold:
                out.add((int(a), int(b), d))
    return out


def test_copies_get_their_original_pairs_and_are_searched_once():
    """Exact copies are searched as one image and given its near pairs: the same pairs as a search of every image
    (brute force here), while a group of 20,000 identical images costs one query, not 20,000^2 comparisons."""
    import fer.data.duplicates.finder as finder

    rng = np.random.default_rng(3)
    base = [texture(rng) for _ in range(30)]
    images = base + [shifted(base[i], 1, i % 2) for i in range(6)]  # near copies of 0-5
    images += [images[i].copy() for i in (0, 0, 2, 31, 31, 31, 7)]  # exact copies: of originals and near copies
    images += [np.zeros((48, 48), np.uint8)] * 2  # blank: not hashed
    x = np.stack(images)[np.random.default_rng(0).permutation(len(images))]
    dup = find_duplicates(x)
    found = set(zip(dup.near_a.tolist(), dup.near_b.tolist(), dup.near_distance.tolist()))
    assert found == _brute_force_near_pairs(x, dup.threshold) and len(found) > 6

    queries = []
    real = finder.hamming_pairs

    def spy(q, refs, threshold):
        queries.append(len(q))
        return real(q, refs, threshold)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(finder, "hamming_pairs", spy)
        same = find_duplicates(np.repeat(texture(rng)[None], 20_000, axis=0))
    assert queries == [1] and len(same.near_a) == 0 and len(same.groups()) == 1


def test_quality_flags_exactly_the_blank_images(cache):
    q = assess_quality(cache.images)
    assert _names(cache, q.indices[q.blank]) == PLANTED_BLANK
    assert not q.low_information.any()
    assert not q.non_face_checked and not q.likely_non_face.any()  # too few images to learn a face space


def test_run_audit_counts_and_findings(cache, tmp_path):
    result = run_audit(cache, tmp_path / "report")
    c = result.counts
    assert (c["exact_groups"], c["exact_images"], c["exact_redundant_images"]) == (4, 8, 4)
    assert (c["exact_within_split_groups"], c["exact_cross_split_groups"]) == (2, 2)
    assert (c["exact_label_conflict_groups"], c["exact_label_conflict_images"]) == (2, 4)
    assert (c["publictest_with_train_twin"], c["publictest_with_train_near_twin"]) == (2, 2)
    assert (c["near_pairs"], c["near_images"], c["near_groups"], c["near_cross_split_pairs"]) == (3, 6, 3, 2)
    assert c["near_label_conflict_pairs"] == 0
    assert (c["blank"], c["low_information"], c["likely_non_face"]) == (2, 0, -1)
    assert c["images"] == 40 + 14 + 4 + 3 + 2

    findings = pd.read_csv(tmp_path / "report" / "findings.csv", keep_default_na=False)
    by_kind = findings.groupby("kind")["name"].apply(set).to_dict()
    assert by_kind["exact_duplicate"] == set().union(*PLANTED_EXACT)
    assert by_kind["label_conflict"] == PLANTED_EXACT[2] | PLANTED_EXACT[3]
    assert by_kind["blank"] == PLANTED_BLANK
    near = findings[findings.kind == "near_duplicate"]
    assert sorted(sorted({a, b}) for a, b in zip(near.name, near.partner_name)) == sorted(map(sorted, PLANTED_NEAR))
    assert (near.pixel_corr.astype(float) > 0.95).all()
    leak = findings[(findings.kind == "exact_duplicate") & (findings.name == "publictest/disgust/t01_leak.png")]
    assert leak.partner_name.tolist() == ["train/disgust/t01.png"]
    for name in ("summary.md", "class_distribution.png", "exact_cross_split.png", "label_conflicts.png",
                 "near_duplicates.png", "near_at_threshold.png", "blank.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| exact_cross_split_groups | 2 |" in summary and "![blank](blank.png)" in summary


def test_drop_train_duplicates_drops_exactly_the_planted_train_copies(cache):
    train, test = cache.split_indices("train"), cache.split_indices("publictest")
    idx = {"train": train.copy(), "test": test.copy(), "predict": test.copy()}
    new_train, report = drop_train_duplicates(cache, idx)
    dropped = _names(cache, np.setdiff1d(train, new_train))
    assert dropped == {"train/disgust/t01.png", "train/happy/t03.png",  # exact copies of test images
                       "train/sad/t04.png", "train/neutral/p00_shift_0_2_bright.png"}  # near copies
    assert report == {"train_before": len(train), "dropped_exact": 2, "dropped_near": 2,
                      "train_after": len(train) - 4}
    assert np.array_equal(idx["test"], test) and np.array_equal(idx["predict"], test)  # held-out untouched
    assert np.array_equal(new_train, train[np.isin(train, new_train)])  # order kept
    # within-train duplicates are not leaks: both copies stay
    assert {"train/angry/t00.png", "train/angry/t00_copy.png", "train/surprise/t05.png"} <= _names(cache, new_train)


def test_datamodule_dedup_train_leaves_no_twin_of_val_or_test(planted, tmp_path):
    from fer.data.datamodule import FERDataModule

    def module(dedup):
        dm = FERDataModule(FolderSource(root=str(planted)), cache_dir=str(tmp_path / "cache"), val_fraction=0.2,
                           dedup=dedup, progress=False, augment=None)
        dm.setup("fit")
        return dm

    plain, deduped = module("none"), module("train")
    assert np.array_equal(plain.idx["test"], deduped.idx["test"]) and np.array_equal(plain.idx["val"], deduped.idx["val"])
    r = deduped.dedup_report
    assert r["train_after"] == len(deduped.idx["train"]) == r["train_before"] - r["dropped_exact"] - r["dropped_near"]
    assert r["train_before"] == len(plain.idx["train"]) and r["dropped_exact"] + r["dropped_near"] >= 3
    held = np.concatenate([deduped.idx["val"], deduped.idx["test"]])
    # every dropped image had an exact or near twin among the held-out images
    dropped = np.setdiff1d(plain.idx["train"], deduped.idx["train"])
    before = find_duplicates(plain.cache.images, np.concatenate([plain.idx["train"], held]))
    twin_groups = set(before.group[np.isin(before.indices, held) & (before.group >= 0)].tolist())
    exact_twin = set(before.indices[np.isin(before.group, list(twin_groups)) & (before.group >= 0)].tolist())
    near_twin = set(before.near_a[np.isin(before.near_b, held)].tolist()) | set(
        before.near_b[np.isin(before.near_a, held)].tolist())
    assert set(dropped.tolist()) == (exact_twin | near_twin) - set(held.tolist())
    dup = find_duplicates(deduped.cache.images, np.concatenate([deduped.idx["train"], held]))
    is_held = np.isin(dup.indices, held)
    for g in range(len(dup.groups())):  # no exact group mixes train and held-out images any more
        members = dup.group == g
        assert is_held[members].all() or not is_held[members].any()
    pair_held = np.isin(dup.near_a, held) ^ np.isin(dup.near_b, held)
    assert not pair_held.any()


def test_face_space_residual_flags_images_unlike_the_rest():
    # a "face space" with a long spectrum, as real faces have (variance of component j ~ 1/j), each image at
    # std 40 around 128; five uniform-noise images lie outside it
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(400, 48 * 48)).astype(np.float32)
    faces = (rng.normal(size=(1200, 400)) / np.sqrt(np.arange(1, 401))) @ basis
    faces = (faces - faces.mean(1, keepdims=True)) / faces.std(1, keepdims=True) * 40 + 128
    faces = np.clip(faces, 0, 255).astype(np.uint8).reshape(-1, 48, 48)
    odd = rng.integers(0, 256, size=(5, 48, 48), dtype=np.uint8)
    imgs = np.concatenate([faces, odd])
    res = face_space_residual(imgs, np.ones(len(imgs), bool))
    assert res[:1200].max() < 0.55 < res[1200:].min()
    q = assess_quality(imgs)
    assert q.non_face_checked and set(np.flatnonzero(q.likely_non_face)) == set(range(1200, 1205))
    assert not q.blank.any() and not q.low_information.any()


def test_settings_from_config():
    assert AuditSettings.from_config(True) == AuditSettings()
    assert AuditSettings.from_config({"near_threshold": 3, "out_dir": "x"}).near_threshold == 3
    from fer.errors import UserError

    with pytest.raises(UserError, match="unknown audit option"):
        AuditSettings.from_config({"near_treshold": 3})


def test_cli_writes_the_report(planted, tmp_path):
    out = tmp_path / "report"
    env = {**os.environ, "FER_ROOT": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "fer.audit", "data=fer2013", f"data.root={planted}", f"audit.out_dir={out}",
         f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'hydra'}", "data.progress=false"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exact duplicates: 4 groups, 8 images, 2 across splits, 2 with conflicting labels" in proc.stdout
    assert "publictest: 2 of 18 images have an identical copy in train, 2 more a near copy" in proc.stdout
    for name in ("summary.md", "findings.csv", "class_distribution.png", "exact_cross_split.png",
                 "label_conflicts.png", "near_duplicates.png", "blank.png"):
        assert (out / name).is_file(), name


@pytest.mark.slow  # a tracked training on planted folders (CI runs the slow tests)
def test_train_with_audit_logs_the_report_to_mlflow(planted, tmp_path):
    """train.py audit=true: the report of the run's own splits lands in the run folder and in MLflow (counts as
    audit.* tags, the files under audit/)."""
    from mlflow.tracking import MlflowClient

    from fer.training import run_training
    from helpers import FAST, compose_train, mlflow_overrides

    fast = [o for o in FAST if not o.startswith("data.source.")]
    cfg = compose_train(tmp_path, ["model=mlp", "data=fer2013", f"data.root={planted}", "audit=true",
                                   *fast, *mlflow_overrides(tmp_path)])
    run_training(cfg)
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.experiment_name).experiment_id])
    tags = run.data.tags
    assert tags["audit.images"] == str(len(list(planted.rglob("*.png")))) and tags["audit.exact_groups"] == str(len(PLANTED_EXACT))
    assert tags["audit.near_pairs"] == str(len(PLANTED_NEAR)) and tags["audit.blank"] == str(len(PLANTED_BLANK))
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "audit")}
    assert {"audit/summary.md", "audit/findings.csv", "audit/class_distribution.png"} <= logged
    assert (Path(cfg.paths.output_dir) / "audit" / "summary.md").is_file()


def test_perceptual_codes_do_not_depend_on_the_eigenvector_signs_lapack_returns(monkeypatch):
    """Eigenvectors come with an arbitrary sign; the codes must not follow it (or a pair at the threshold could
    move in or out of the audit's counts with the library build)."""
    rng = np.random.default_rng(3)
    images = np.stack([texture(rng) for _ in range(60)])
    center, shifted = perceptual_hashes(images)
    real_eigh = np.linalg.eigh

    def flipped(a):
        values, vectors = real_eigh(a)
        return values, -vectors

    monkeypatch.setattr(np.linalg, "eigh", flipped)
    center2, shifted2 = perceptual_hashes(images)
    assert np.array_equal(center, center2) and np.array_equal(shifted, shifted2)
