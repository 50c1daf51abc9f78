"""Duplicate detection over the image cache: exact copies and shift-tolerant near copies.

The data audit (fer.audit) reports them; `data.dedup=train` (FERDataModule) drops training images that have a
twin in a held-out part, so this lives on the data floor.
"""

from fer.data.duplicates.finder import (MIN_STD, NEAR_THRESHOLD, Duplicates, drop_train_duplicates,
                                        find_duplicates, pair_correlation)
from fer.data.duplicates.hashes import MAX_SHIFT

__all__ = ["Duplicates", "MAX_SHIFT", "MIN_STD", "NEAR_THRESHOLD", "drop_train_duplicates", "find_duplicates",
           "pair_correlation"]
