"""Command-line helpers: one clear message instead of a traceback wall for errors users can fix."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

from fer.data.errors import DataError

log = logging.getLogger("fer")


class UserError(ValueError):
    """A mistake in how the tool was called (bad checkpoint, wrong argument): message only, no traceback."""


@contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except (DataError, UserError) as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
