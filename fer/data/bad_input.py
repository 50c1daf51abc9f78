"""Bad-input policy shared by every reader: a clear error naming the file, or a counted, reported skip."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from fer.runtime.images import DEFAULT_MAX_PIXELS
from fer.errors import DataError


SKIP_HINT = "fix or remove it, or set data.on_bad_image=skip to skip such files (they are listed in a report)"
# a labels file's rows (a label or split that cannot be read) are never skipped, whatever data.on_bad_image says:
# a wrong label file must not train quietly
ROW_HINT = "fix the row (data.on_bad_image=skip skips unreadable images, not unreadable labels)"


@dataclass
class BadInputLog:
    """Collects bad inputs. In 'error' mode the first one raises; in 'skip' mode they are counted and listed."""

    policy: str = "error"  # "error" | "skip"
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are bad input, refused before decoding
    entries: list[tuple[str, str]] = field(default_factory=list)  # (file or row, reason)
    hint: str = SKIP_HINT  # what the error in 'error' mode tells the user to do

    def __post_init__(self) -> None:
        if self.policy not in ("error", "skip"):
            raise DataError(f"data.on_bad_image must be 'error' or 'skip', got {self.policy!r}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise DataError(f"max_image_pixels must be a positive number of pixels, got {self.max_pixels!r}")

    def bad(self, where: str, reason: str) -> None:
        if self.policy == "error":
            raise DataError(f"{where}: {reason}; {self.hint}")
        self.entries.append((str(where), reason))

    def __len__(self) -> int:
        return len(self.entries)

    def write(self, path: Path) -> None:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "reason"])
            writer.writerows(self.entries)
