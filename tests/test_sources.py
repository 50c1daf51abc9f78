"""Each reader turns its layout into the same cache: names, splits, labels, 48x48 grayscale pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.classes import CLASS_NAMES, parse_label
from fer.data.cache import open_cache
from fer.errors import DataError
from fer.data.sources import ChallengeSource, Fer2013CsvSource, FolderSource, ImageListSource, SyntheticSource

from conftest import png_bomb


def test_parse_label_accepts_ints_names_and_aliases():
    assert [parse_label(v) for v in (0, "6", "Happy", " SAD ", "anger", 3.0, "2.0", "Scared")] == [0, 6, 3, 4, 0, 3, 2,
                                                                                                 2]
    assert [parse_label(v) for v in (7, -1, "smile", "", None, 2.5)] == [None] * 6


def test_parse_label_refuses_other_spellings_of_a_number():
    """"+3", "-0", "3e0", Arabic-Indic and full-width digits are not what a labels file means by 3: refused (the
    reader then names the row), not guessed."""
    assert [parse_label(v) for v in ("+3", "-0", "3e0", "\u0663", "\uff13", "3.5", "0x3")] == [None] * 7


def test_folder_source_reads_splits_classes_any_case_and_converts(folder_dataset: Path, tmp_path: Path):
    cache = open_cache(FolderSource(str(folder_dataset)), tmp_path / "cache", progress=False)
    assert cache.split_names == ["train", "publictest"]
    assert len(cache.split_indices("train")) == 7 * 6 + 2 and len(cache.split_indices("publictest")) == 14
    assert np.bincount(cache.labels[cache.split_indices("publictest")]).tolist() == [2] * 7
    assert cache.images.shape == (58, 48, 48) and cache.images.dtype == np.uint8
    assert cache.info["resized"] == 1 and cache.info["color"] == 1
    # pixels are what was written (png is lossless): the bright class bar sits at rows 6c..6c+6
    i = cache.names.index("train/ANGRY/train_0_0.png".replace("ANGRY", "angry"))
    assert cache.images[i, 0:6].min() == 230 and cache.labels[i] == 0
    big = cache.names.index("train/sad/big.png")
    assert cache.labels[big] == CLASS_NAMES.index("sad")


def test_challenge_source_finds_columns_and_labels(challenge_dataset: Path, tmp_path: Path):
    cache = open_cache(ChallengeSource(str(challenge_dataset)), tmp_path / "cache", progress=False)
    train = cache.split_indices("train")
    assert len(train) == 28 and (cache.labels[train] == np.arange(28) % 7).all()
    pred = cache.split_indices("predict")
    assert [cache.names[i] for i in pred] == [f"images_test/test_{i:03d}.jpg" for i in range(5)] + \
        ["images_test/test_odd.jpg"]
    assert (cache.labels[pred] == -1).all()
    assert cache.info["color"] == 28 and cache.info["resized"] == 1


def test_challenge_source_column_override(challenge_dataset: Path, tmp_path: Path):
    src = ChallengeSource(str(challenge_dataset), image_column="Image_ID", label_column="Emotion")
    assert len(open_cache(src, tmp_path / "c", progress=False).split_indices("train")) == 28
    with pytest.raises(DataError, match="no column 'nope'"):
        ChallengeSource(str(challenge_dataset), label_column="nope").manifest()


def test_fer2013_csv_source(fer_csv: Path, tmp_path: Path):
    cache = open_cache(Fer2013CsvSource(str(fer_csv.parent)), tmp_path / "cache", progress=False)
    assert sorted(cache.split_names) == ["privatetest", "publictest", "train"]
    assert len(cache) == 21 and (cache.labels == np.arange(21) % 7).all()
    assert cache.images[0, 0:6].min() == 230


def test_synthetic_source_is_deterministic_and_balanced(tmp_path: Path):
    a = open_cache(SyntheticSource(n_train=70, n_test=14, seed=3), tmp_path / "a", progress=False)
    b = open_cache(SyntheticSource(n_train=70, n_test=14, seed=3), tmp_path / "b", progress=False)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.bincount(a.labels[a.split_indices("train")]).tolist() == [10] * 7


def test_image_list_source(folder_dataset: Path, tmp_path: Path):
    one = folder_dataset / "train" / "happy" / "color.jpg"
    cache = open_cache(ImageListSource([str(one), str(folder_dataset / "PublicTest")]), tmp_path / "c",
                       progress=False)
    assert len(cache) == 15 and cache.split_names == ["predict"]


# ---- bad input: a clear error naming the file, or a counted skip listed in a report --------------------

def _corrupt(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name,data,reason", [
    ("broken.jpg", b"this is not an image", "not a readable image"),
    ("notes.txt", b"hello", "not a readable image"),
    ("empty.png", b"", "empty file"),
])
def test_bad_image_errors_name_the_file(folder_dataset, tmp_path, name, data, reason):
    _corrupt(folder_dataset / "train" / "happy", name, data)
    with pytest.raises(DataError, match=rf"train/happy/{name}: {reason}.*on_bad_image=skip"):
        open_cache(FolderSource(str(folder_dataset)), tmp_path / "cache", progress=False)


def test_truncated_jpeg_is_detected(folder_dataset, tmp_path):
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8))
    _corrupt(folder_dataset / "train" / "fear", "cut.jpg", buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError, match="cut.jpg: truncated JPEG"):
        open_cache(FolderSource(str(folder_dataset)), tmp_path / "cache", progress=False)


def test_skip_mode_counts_and_lists_bad_files(folder_dataset, tmp_path):
    _corrupt(folder_dataset / "train" / "happy", "broken.jpg", b"garbage")
    _corrupt(folder_dataset / "PublicTest" / "sad", "empty.jpg", b"")
    cache = open_cache(FolderSource(str(folder_dataset)), tmp_path / "cache", on_bad_image="skip", progress=False)
    assert len(cache) == 58 and cache.info["skipped"] == 2
    listed = (cache.path / "skipped.csv").read_text()
    assert "train/happy/broken.jpg" in listed and "PublicTest/sad/empty.jpg" in listed
    assert "train/happy/broken.jpg" not in cache.names


def test_unknown_class_folder_and_empty_folders(folder_dataset, tmp_path):
    (folder_dataset / "train" / "smile").mkdir()
    with pytest.raises(DataError, match="unknown class folder 'smile'"):
        FolderSource(str(folder_dataset)).manifest()
    (folder_dataset / "train" / "smile").rmdir()
    (folder_dataset / "val" / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="val/happy: empty class folder"):
        FolderSource(str(folder_dataset)).manifest()
    with pytest.raises(DataError, match="data folder not found.*data.root"):
        FolderSource(str(tmp_path / "nowhere")).manifest()
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no split folders"):
        FolderSource(str(tmp_path / "flat")).manifest()


@pytest.mark.parametrize("rows,match", [
    ("train_000.jpg,0\nmissing.jpg,1", r"challengeA_train.csv:3: names 'missing.jpg', which is not in"),
    ("train_000.jpg,0\ntrain_001.jpg,joy", r"challengeA_train.csv:3: unknown label 'joy'"),
    ("train_000.jpg,0\ntrain_000.jpg,1", r"challengeA_train.csv:3: duplicate file name 'train_000.jpg'"),
    ("train_000.jpg,0\n,1", r"challengeA_train.csv:3: empty cell"),
    ("train_000.jpg,0\ntrain_001.jpg,", r"challengeA_train.csv:3: empty cell"),
])
def test_challenge_csv_problems_name_the_row(challenge_dataset, rows, match):
    (challenge_dataset / "challengeA_train.csv").write_text("Image_ID,Emotion\n" + rows + "\n")
    with pytest.raises(DataError, match=match):
        ChallengeSource(str(challenge_dataset)).manifest()


def test_challenge_empty_csv_and_empty_test_folder(challenge_dataset):
    csv_path = challenge_dataset / "challengeA_train.csv"
    rows = csv_path.read_text()
    csv_path.write_text("Image_ID,Emotion\n")
    with pytest.raises(DataError, match="challengeA_train.csv: no rows"):
        ChallengeSource(str(challenge_dataset)).manifest()
    csv_path.write_text(rows)
    for f in (challenge_dataset / "images_test").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="images_test: empty folder"):
        ChallengeSource(str(challenge_dataset)).manifest()
    (challenge_dataset / "images_test").rmdir()  # no test folder at all is fine: training data only
    manifest = ChallengeSource(str(challenge_dataset)).manifest()
    assert set(manifest.splits) == {"train"} and len(manifest) == 28


@pytest.mark.parametrize("row,match", [
    ("9,{pixels},Training", r"fer2013.csv:3: unknown emotion '9'; expected 0-6"),
    ("smile,{pixels},Training", r"fer2013.csv:3: unknown emotion 'smile'"),
    ("3,{pixels},Validation", r"fer2013.csv:3: unknown Usage 'Validation'; expected Training, PublicTest"),
    ("3,{pixels},", r"fer2013.csv:3: unknown Usage ''"),
])
def test_fer_csv_unknown_emotion_or_usage_named_by_row(fer_csv, row, match):
    lines = fer_csv.read_text().splitlines()
    lines[2] = row.format(pixels=lines[2].split(",")[1])
    fer_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match) as error:
        Fer2013CsvSource(str(fer_csv)).manifest()
    # labels are never skipped, so the message does not offer on_bad_image=skip as a way out
    assert str(error.value).endswith("fix the row (data.on_bad_image=skip skips unreadable images, not unreadable "
                                     "labels)")


def test_fer_csv_bad_pixels_named_by_row(fer_csv, tmp_path):
    text = fer_csv.read_text().splitlines()
    text[3] = "2,1 2 3,Training"
    fer_csv.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"fer2013.csv:4: pixels must be 2304 integers"):
        open_cache(Fer2013CsvSource(str(fer_csv)), tmp_path / "c", progress=False)
    cache = open_cache(Fer2013CsvSource(str(fer_csv)), tmp_path / "c", on_bad_image="skip", progress=False)
    assert len(cache) == 20 and cache.info["skipped"] == 1


def test_decompression_bomb_is_refused_from_its_header(folder_dataset, tmp_path, monkeypatch):
    """A 20000x20000 PNG is refused (naming the file and its size) before OpenCV decodes a single pixel; with
    on_bad_image=skip it is counted and listed instead. The limit is a setting."""
    import resource

    import fer.data.decode as decode

    bomb = png_bomb(folder_dataset / "train" / "happy" / "bomb.png")
    bomb_size = bomb.stat().st_size
    assert bomb_size < 2 * 2**20
    real_imdecode = decode.cv2.imdecode

    def guarded(buf, flags):
        assert len(buf) != bomb_size, "the bomb reached the decoder"
        return real_imdecode(buf, flags)

    monkeypatch.setattr(decode.cv2, "imdecode", guarded)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=r"train/happy/bomb.png: 20000x20000 pixels, over the limit of 50,000,000"):
        open_cache(FolderSource(str(folder_dataset)), tmp_path / "cache", progress=False)
    cache = open_cache(FolderSource(str(folder_dataset)), tmp_path / "cache", on_bad_image="skip", progress=False)
    assert cache.info["skipped"] == 1 and "bomb.png" in (cache.path / "skipped.csv").read_text()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200 * 1024  # kB: nothing decoded
    # the limit is a setting: a low one refuses ordinary images too (the fixture's 96x80 one)
    bomb.unlink()
    with pytest.raises(DataError, match=r"big.png: 96x80 pixels, over the limit of 5,000"):
        open_cache(FolderSource(str(folder_dataset)), tmp_path / "cache", max_pixels=5000, progress=False)


@pytest.mark.parametrize("fmt", [".jpg", ".png", ".bmp", ".webp", ".tif"])
def test_image_size_is_read_from_the_header(fmt, tmp_path):
    from fer.runtime.images import image_size

    path = tmp_path / f"x{fmt}"
    assert cv2.imwrite(str(path), np.zeros((37, 53, 3), np.uint8))
    assert image_size(np.fromfile(path, dtype=np.uint8)) == (53, 37)


@pytest.mark.parametrize("header", ["Image_ID,Emotion", "a,b", ""])
def test_challenge_csv_columns_found_by_content_or_position_are_reported(challenge_dataset, header):
    """Header names that say nothing: the columns are picked by content and the choice is reported; no header at
    all: the first line is a data row (it names an image) and is kept, not eaten as a header."""
    csv_path = challenge_dataset / "challengeA_train.csv"
    rows = csv_path.read_text().splitlines()[1:]
    csv_path.write_text("\n".join(([header] if header else []) + rows) + "\n")
    manifest = ChallengeSource(str(challenge_dataset)).manifest()
    assert sum(s == "train" for s in manifest.splits) == 28
    assert (manifest.labels[:28] == np.arange(28) % 7).all()
    reported = [n for n in manifest.notes if "image names read from column" in n]
    if header == "Image_ID,Emotion":
        assert reported == []  # named by their headers: nothing to report
    elif header == "a,b":
        assert reported == ["challengeA_train.csv: image names read from column 'a', labels from column 'b' "
                            "(set data.source.image_column / label_column to choose others)"]
    else:
        assert "challengeA_train.csv has no header row: its first line is read as data" in manifest.notes
        assert reported and "'column 1'" in reported[0] and "'column 2'" in reported[0]


def test_jpeg_size_is_found_behind_a_large_metadata_block():
    """A camera JPEG can carry 100 KB of EXIF/ICC before its frame header: the size is still read from the header,
    so the pixel limit applies before decoding."""
    from fer.runtime.images import decode_bytes, image_size

    ok, enc = cv2.imencode(".jpg", np.full((40, 64), 128, np.uint8))
    enc = enc.tobytes()
    app = b"".join(b"\xff\xe1" + (65535).to_bytes(2, "big") + bytes(65533) for _ in range(2))  # two full APP1s
    jpeg = np.frombuffer(enc[:2] + app + enc[2:], np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE).shape == (40, 64)  # still a valid JPEG
    assert image_size(jpeg) == (64, 40)
    with pytest.raises(ValueError, match="64x40 pixels, over the limit of 1,000"):
        decode_bytes(jpeg, max_pixels=1000)


def test_labels_csv_in_utf16_is_read_and_latin1_is_one_line(challenge_dataset: Path):
    """Spreadsheets save "Unicode text" as UTF-16 with a byte-order mark: read as such. A Latin-1 file (here an
    accented header) is refused in one line naming the file, not a UnicodeDecodeError from inside pandas."""
    csv_path = challenge_dataset / "challengeA_train.csv"
    text = csv_path.read_text()
    utf8 = ChallengeSource(str(challenge_dataset)).manifest()
    csv_path.write_text(text, encoding="utf-16")
    utf16 = ChallengeSource(str(challenge_dataset)).manifest()
    assert utf16.names == utf8.names and (utf16.labels == utf8.labels).all()
    csv_path.write_bytes(text.replace("Emotion", "Émotion").encode("latin-1"))
    with pytest.raises(DataError, match=r"challengeA_train.csv: not UTF-8 text \(it holds byte 0xc9"):
        ChallengeSource(str(challenge_dataset)).manifest()


def test_a_file_larger_than_any_image_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """A 2 GB sparse file named .jpg: refused from its size (no 2 GB read into memory), naming the file."""
    import fer.runtime.images as images
    from fer.runtime.images import read_image

    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as fh:
        fh.truncate(2 * 2**30)  # sparse: takes no disk
    monkeypatch.setattr(images.np, "fromfile", lambda *a, **k: pytest.fail("the file was read"))
    with pytest.raises(DataError, match=r"huge.jpg: 2,147,483,648 bytes, larger than an image within the limit"):
        read_image(huge)


DATA_CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "data").glob("*.yaml")
                      if p.stem != "default")


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_builds_a_declared_data_source(name, tmp_path):
    """What the cache and predict.py ask of a source (manifest, location, submission columns) is declared by
    fer.data.source_base.DataSource: every conf/data/ reader is one, so nothing probes it by attribute name."""
    from omegaconf import OmegaConf

    from fer.data.opened import build_source
    from fer.data.source_base import DataSource

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "data" / f"{name}.yaml")
    source_cfg = OmegaConf.to_container(cfg.source, resolve=False)
    source_cfg = {k: (str(tmp_path) if k == "root" else v) for k, v in source_cfg.items()}
    source = build_source({"name": name, "source": source_cfg})
    assert isinstance(source, DataSource)
    assert source.location() == (str(tmp_path) if "root" in source_cfg else None)
    assert source.submission_columns() is None  # no labels CSV in tmp_path: the default columns


def test_a_target_that_is_no_data_source_is_one_line():
    from fer.data.opened import build_source
    from fer.errors import UserError

    with pytest.raises(UserError, match="made a dict, not a data source"):
        build_source({"name": "mine", "source": {"_target_": "builtins.dict"}})


def test_a_challenge_source_submits_with_its_labels_csv_columns(tmp_path):
    (tmp_path / "challengeA_train.csv").write_text("file,emotion\n00000.jpg,3\n00001.jpg,0\n")
    assert ChallengeSource(str(tmp_path)).submission_columns() == ("file", "emotion")
