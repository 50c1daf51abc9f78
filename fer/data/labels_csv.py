"""Reading a labels CSV (challengeA_train.csv, fer2013.csv) as text columns, whatever a spreadsheet saved it as."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer.errors import DataError

_BOMS = ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"), (b"\xef\xbb\xbf", "utf-8-sig"))


def read_labels_csv(path: Path, **kwargs) -> pd.DataFrame:
    """A CSV as text columns. UTF-8, or UTF-16 / UTF-8 with a byte-order mark (what spreadsheets save as "Unicode
    text"); any other encoding is one line naming the file, not a UnicodeDecodeError from inside pandas."""
    with open(path, "rb") as fh:
        head = fh.read(3)
    encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), "utf-8")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, **kwargs)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (it holds byte 0x{exc.object[exc.start]:02x}, e.g. Latin-1); "
                        "save it as a UTF-8 CSV") from exc
