"""Source readers: turn a data set on disk (or the synthetic generator) into a Manifest.

A Manifest (fer.data.manifest) lists every image with its split and label and knows how to write the pixels
into a [N,48,48] uint8 array. Readers only list and validate; the cache (fer.data.cache) decides when to decode,
and the DataModule never sees a file path. A new data source is one reader class, a subclass of
fer.data.source_base.DataSource (here, or in a module of its own), plus one conf/data/<name>.yaml whose
`source._target_` names it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer.classes import CLASS_NAMES, IMAGE_SIZE, parse_label
from fer.data.bad_input import ROW_HINT, BadInputLog
from fer.data.labels_csv import read_labels_csv
from fer.data.manifest import (IMAGE_EXTENSIONS, UNLABELLED, FillReport, Manifest, file_fill, list_files,
                               require_dir, stat_identity)
from fer.data.source_base import DataSource, FolderBasedSource
from fer.errors import DataError
from fer.runtime.images import list_inputs


@dataclass
class FolderSource(FolderBasedSource):
    """`<root>/<split>/<class>/*.jpg` (the common FER2013 layout); class folder names are case-insensitive."""

    root: str
    splits: list[str] | None = None  # None: every split folder found
    name: str = "fer2013"

    def manifest(self) -> Manifest:
        root = require_dir(Path(self.root).expanduser(), "data folder")
        split_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self.splits is not None:
            wanted = {s.lower() for s in self.splits}
            split_dirs = [p for p in split_dirs if p.name.lower() in wanted]
            missing = wanted - {p.name.lower() for p in split_dirs}
            if missing:
                raise DataError(f"{root}: split folder(s) {sorted(missing)} not found; found "
                                f"{[p.name for p in root.iterdir() if p.is_dir()]}")
        if not split_dirs:
            raise DataError(f"{root}: no split folders; expected <root>/<split>/<class>/*.jpg, e.g. train/happy/x.jpg")
        names, splits, labels, paths, identity = [], [], [], [], []
        for split_dir in split_dirs:
            class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
            if not class_dirs:
                raise DataError(f"{split_dir}: no class folders; expected {split_dir}/<class>/*.jpg with classes "
                                f"{', '.join(CLASS_NAMES)}")
            for class_dir in class_dirs:
                label = parse_label(class_dir.name)
                if label is None:
                    raise DataError(f"{class_dir}: unknown class folder {class_dir.name!r}; expected one of "
                                    f"{', '.join(CLASS_NAMES)} (any case) or 0-6; rename or move it")
                entries = list_files(class_dir)
                if not entries:
                    raise DataError(f"{class_dir}: empty class folder; add images or remove the folder")
                identity += stat_identity(entries, root)
                prefix = os.path.relpath(class_dir, root)
                for e in entries:
                    names.append(os.path.join(prefix, e.name))
                    paths.append(e.path)
                    splits.append(split_dir.name.lower())
                    labels.append(label)
        return Manifest(names=names, splits=splits, labels=np.asarray(labels, dtype=np.int64),
                        identity={"kind": "folder", "files": identity}, fill=file_fill(paths, names))


_IMAGE_HEADERS = {"image", "images", "file", "filename", "file_name", "image_name", "image_id", "img", "name", "path",
                  "id"}
_LABEL_HEADERS = {"label", "labels", "emotion", "class", "target", "expression", "y"}


@dataclass
class ChallengeSource(FolderBasedSource):
    """`<root>/images_train/*.jpg` + `<root>/challengeA_train.csv` (file name, label) + unlabelled `<root>/images_test/`."""

    root: str
    train_dir: str = "images_train"
    test_dir: str = "images_test"
    labels_csv: str = "challengeA_train.csv"
    image_column: str | None = None  # None: found by header, else by content
    label_column: str | None = None
    name: str = "challenge"

    def submission_columns(self) -> tuple[str, str] | None:
        """The image and label column names of the labels CSV (a submission repeats them), or None when the CSV is
        missing or its columns cannot be told apart (training says why)."""
        csv_path = Path(self.root).expanduser() / self.labels_csv
        try:
            df = read_labels_csv(csv_path, nrows=200)
            return tuple(str(c) for c in self._columns(df, csv_path))  # type: ignore[return-value]
        except (OSError, ValueError, pd.errors.ParserError):  # DataError is a ValueError
            return None

    def _columns(self, df: pd.DataFrame, csv_path: Path) -> tuple[str, str]:
        cols = list(df.columns)
        if self.image_column and self.image_column not in cols:
            raise DataError(f"{csv_path}: no column {self.image_column!r} (data.source.image_column); columns: {cols}")
        if self.label_column and self.label_column not in cols:
            raise DataError(f"{csv_path}: no column {self.label_column!r} (data.source.label_column); columns: {cols}")
        image_col = self.image_column or next((c for c in cols if str(c).strip().lower() in _IMAGE_HEADERS), None)
        if image_col is None:  # by content: the column whose (non-empty) values mostly end with an image extension
            def looks_like_files(col: str) -> bool:
                values = df[col].str.strip().str.lower()
                values = values[values != ""]
                return len(values) > 0 and values.str.endswith(tuple(IMAGE_EXTENSIONS)).mean() > 0.5

            image_col = next((c for c in cols if looks_like_files(c)), None)
        label_col = self.label_column or next((c for c in cols if str(c).strip().lower() in _LABEL_HEADERS), None)
        if label_col is None:
            rest = [c for c in cols if c != image_col]
            label_col = rest[0] if len(rest) == 1 else None
        if image_col is None or label_col is None or image_col == label_col:
            raise DataError(f"{csv_path}: cannot tell the image-name and label columns apart in {cols}; set "
                            "data.source.image_column and data.source.label_column")
        return image_col, label_col

    def manifest(self) -> Manifest:
        root = require_dir(Path(self.root).expanduser(), "challenge data folder")
        train_dir = require_dir(root / self.train_dir, "training image folder")
        csv_path = root / self.labels_csv
        if not csv_path.is_file():
            raise DataError(f"label file not found: {csv_path} (data.source.labels_csv)")
        df = read_labels_csv(csv_path)
        notes = []
        if not (self.image_column or self.label_column) and any(
                str(c).strip().lower().endswith(tuple(IMAGE_EXTENSIONS)) for c in df.columns):
            # the first line is a data row, not a header (it names an image): read every line as data
            df = read_labels_csv(csv_path, header=None)
            df.columns = [f"column {i + 1}" for i in range(df.shape[1])]
            notes.append(f"{csv_path.name} has no header row: its first line is read as data")
        if df.empty:
            raise DataError(f"{csv_path}: no rows")
        image_col, label_col = self._columns(df, csv_path)
        named = {str(image_col).strip().lower() in _IMAGE_HEADERS or image_col == self.image_column,
                 str(label_col).strip().lower() in _LABEL_HEADERS or label_col == self.label_column}
        if named != {True}:  # found by content or by position: say which, so a wrong guess is seen
            notes.append(f"{csv_path.name}: image names read from column {image_col!r}, labels from column "
                         f"{label_col!r} (set data.source.image_column / label_column to choose others)")
        bad = BadInputLog("error", hint=ROW_HINT)  # a wrong label file must not train quietly
        files = {e.name: e for e in list_files(train_dir)}
        seen: dict[str, int] = {}
        names, labels, paths, entries = [], [], [], []
        for row, (fname, raw_label) in enumerate(zip(df[image_col], df[label_col]), start=2):
            where = f"{csv_path}:{row}"
            fname = fname.strip()
            if not fname or not raw_label.strip():
                bad.bad(where, f"empty cell (image={fname!r}, label={raw_label!r})")
            base = os.path.basename(fname)
            if base in seen:
                bad.bad(where, f"duplicate file name {base!r} (first on row {seen[base]})")
            seen[base] = row
            label = parse_label(raw_label)
            if label is None:
                bad.bad(where, f"unknown label {raw_label!r}; use 0-6 or one of {', '.join(CLASS_NAMES)}")
            if base not in files:
                bad.bad(where, f"names {base!r}, which is not in {train_dir}")
            entries.append(files[base])
            names.append(f"{self.train_dir}/{base}")
            paths.append(files[base].path)
            labels.append(label)
        unlabelled = len(files) - len(seen)
        if unlabelled:
            notes.append(f"{unlabelled} file(s) in {train_dir} have no row in {csv_path.name} and are not used")
        splits = ["train"] * len(names)
        test_dir = root / self.test_dir
        test_entries = list_files(test_dir) if test_dir.is_dir() else []
        if test_dir.is_dir() and not test_entries:
            raise DataError(f"{test_dir}: empty folder; add the test images or remove the folder")
        for e in test_entries:
            names.append(f"{self.test_dir}/{e.name}")
            paths.append(e.path)
            splits.append("predict")
            labels.append(UNLABELLED)
        csv_stat = csv_path.stat()
        identity = {"kind": "challenge", "csv": [csv_path.name, csv_stat.st_size, csv_stat.st_mtime_ns],
                    "columns": [image_col, label_col], "files": stat_identity(entries + test_entries, root)}
        return Manifest(names=names, splits=splits, labels=np.asarray(labels, dtype=np.int64), identity=identity,
                        fill=file_fill(paths, names), notes=notes)


_FER_CSV_SPLITS = {"training": "train", "publictest": "publictest", "privatetest": "privatetest"}


@dataclass
class Fer2013CsvSource(FolderBasedSource):
    """The original Kaggle `fer2013.csv`: emotion,pixels,Usage (Training / PublicTest / PrivateTest)."""

    root: str
    file: str = "fer2013.csv"
    name: str = "fer2013_csv"

    def _path(self) -> Path:
        path = Path(self.root).expanduser()
        path = path / self.file if path.is_dir() else path
        if not path.is_file():
            raise DataError(f"fer2013 CSV not found: {path} (set data.root to the folder holding {self.file})")
        return path

    def manifest(self) -> Manifest:
        path = self._path()
        df = read_labels_csv(path)
        missing = {"emotion", "pixels", "Usage"} - set(df.columns)
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}; expected emotion,pixels,Usage")
        if df.empty:
            raise DataError(f"{path}: no rows")
        names = [f"{path.name}:{row}" for row in range(2, len(df) + 2)]
        labels, splits = [], []
        bad = BadInputLog("error", hint=ROW_HINT)
        for where, emotion, usage in zip(names, df["emotion"], df["Usage"]):
            label = parse_label(emotion)
            if label is None:
                bad.bad(where, f"unknown emotion {emotion!r}; expected 0-6")
            split = _FER_CSV_SPLITS.get(usage.strip().lower())
            if split is None:
                bad.bad(where, f"unknown Usage {usage!r}; expected Training, PublicTest or PrivateTest")
            labels.append(label)
            splits.append(split)
        pixels = df["pixels"].tolist()

        def fill(out: np.ndarray, bad_log: BadInputLog, progress: bool) -> FillReport:
            ok = np.zeros(len(pixels), dtype=bool)
            for i, text in enumerate(pixels):
                values = np.array(text.split(), dtype=np.int64) if text.strip() else np.empty(0, np.int64)
                if values.size != IMAGE_SIZE * IMAGE_SIZE or values.min(initial=0) < 0 or values.max(initial=0) > 255:
                    bad_log.bad(names[i], f"pixels must be {IMAGE_SIZE * IMAGE_SIZE} integers 0-255, got "
                                          f"{values.size} value(s)")
                    continue
                out[i] = values.reshape(IMAGE_SIZE, IMAGE_SIZE)
                ok[i] = True
            return FillReport(ok=ok)

        st = path.stat()
        return Manifest(names=names, splits=splits, labels=np.asarray(labels, dtype=np.int64),
                        identity={"kind": "fer2013_csv", "file": [path.name, st.st_size, st.st_mtime_ns]}, fill=fill)


@dataclass
class ImageListSource(DataSource):
    """Unlabelled images: one file, a folder (recursively) or an explicit list; all go to the "predict" split."""

    paths: list[str]
    name: str = "images"

    def manifest(self) -> Manifest:
        files = list_inputs(self.paths)  # the runtime's lister: both tools read the same files
        names = [str(f) for f in files]
        identity = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        return Manifest(names=names, splits=["predict"] * len(names),
                        labels=np.full(len(names), UNLABELLED, dtype=np.int64),
                        identity={"kind": "images", "files": identity}, fill=file_fill(names, names))


@dataclass
class SyntheticSource(DataSource):
    """Procedurally drawn faces (fer.data.synthetic): the embedded default, no download needed."""

    n_train: int = 3500
    n_test: int = 700
    seed: int = 0
    nuisance: float = 1.0
    name: str = "synthetic"

    def manifest(self) -> Manifest:
        from fer.data.synthetic import render_faces, synthetic_labels

        # the test set uses a different seed stream so no test face is a copy of a training face
        train_labels = synthetic_labels(self.n_train, self.seed)
        test_labels = synthetic_labels(self.n_test, self.seed + 1_000_003)
        labels = np.concatenate([train_labels, test_labels])
        names = [f"synthetic/train/{i:07d}.png" for i in range(self.n_train)] + \
                [f"synthetic/test/{i:07d}.png" for i in range(self.n_test)]

        def fill(out: np.ndarray, bad: BadInputLog, progress: bool) -> FillReport:
            render_faces(train_labels, self.seed, self.nuisance, out=out[: self.n_train])
            render_faces(test_labels, self.seed + 1_000_003, self.nuisance, out=out[self.n_train:])
            return FillReport(ok=np.ones(len(labels), dtype=bool))

        import fer.data.synthetic as generator

        # the generator's own code is part of the identity: a changed drawing routine rebuilds the cache
        identity = {"kind": "synthetic", "n_train": self.n_train, "n_test": self.n_test, "seed": self.seed,
                    "nuisance": self.nuisance,
                    "generator": hashlib.sha1(Path(generator.__file__).read_bytes()).hexdigest()}
        return Manifest(names=names, splits=["train"] * self.n_train + ["test"] * self.n_test, labels=labels,
                        identity=identity, fill=fill)
