"""Decode image files into 48x48 grayscale uint8, in parallel threads (OpenCV releases the GIL), for the cache.
Decoding one image is the runtime's job (fer.runtime.images): this only runs it over many files."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from fer.runtime.images import DEFAULT_MAX_PIXELS, decode_file, to_gray48


@dataclass
class DecodeResult:
    ok: np.ndarray  # bool [n]: decoded and written
    resized: int  # images that were not 48x48 and were resized
    color: int  # images that had 3/4 channels and were converted to grayscale
    errors: dict[int, str]  # position -> reason, for the files that failed


def decode_files(paths: list[str], out: np.ndarray, desc: str = "decoding images", workers: int | None = None,
                 progress: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodeResult:
    """Decode paths[i] into out[i] (shape [n,48,48] uint8, e.g. a memmap). Never raises for a bad file:
    failures are returned by position so the caller applies the bad-input policy with file names."""
    n = len(paths)
    ok = np.zeros(n, dtype=bool)
    errors: dict[int, str] = {}
    workers = workers or min(8, os.cpu_count() or 1)
    chunk = 512  # big chunks: per-task overhead stays small next to ~50 us per 48x48 JPEG

    def work(start: int) -> tuple[int, int, int, dict[int, str]]:
        n_resized = n_color = 0
        errs: dict[int, str] = {}
        for i in range(start, min(start + chunk, n)):
            try:
                img = decode_file(paths[i], max_pixels)
                out[i], resized, color = to_gray48(img)
                n_resized += resized
                n_color += color
                ok[i] = True
            except (ValueError, OSError, cv2.error) as exc:
                errs[i] = str(exc)
        return min(start + chunk, n) - start, n_resized, n_color, errs

    from tqdm.auto import tqdm  # here: decode_bytes alone (predict.py's photos, the runtime) needs no tqdm

    resized = color = 0
    with ThreadPoolExecutor(workers) as pool, tqdm(total=n, desc=desc, unit="img", disable=not progress,
                                                   mininterval=0.5) as bar:
        for done, n_resized, n_color, errs in pool.map(work, range(0, n, chunk)):
            resized += n_resized
            color += n_color
            errors.update(errs)
            bar.update(done)
    return DecodeResult(ok=ok, resized=resized, color=color, errors=errors)
