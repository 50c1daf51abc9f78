"""Command-line helpers: one clear message instead of a traceback wall for errors users can fix."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

from fer.errors import DataError, UserError

log = logging.getLogger("fer")


@contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except (DataError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        # the run's log file keeps the error too; the console shows it once (the line above), not twice
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (exc,), None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        sys.exit(2)


def check_recipe_for(cfg, script: str) -> None:
    """experiment= recipes live in one conf/experiment/ folder for both scripts: refuse one meant for the other."""
    wanted = cfg.get("recipe_for") or script
    if wanted != script:
        name = "<name>"
        try:
            from hydra.core.hydra_config import HydraConfig

            name = HydraConfig.get().runtime.choices.get("experiment") or name
        except (ValueError, AttributeError):  # composed outside a Hydra app
            pass
        raise UserError(f"experiment={name} is a recipe for {wanted}.py, not {script}.py: "
                        f"python {wanted}.py experiment={name}")
