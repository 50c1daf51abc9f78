"""Images for the runtime and the training side alike: decode a file's bytes (refusing bombs and truncated JPEGs
before decoding), convert any image to grayscale uint8, and list the image files of inputs. numpy and OpenCV only:
the torch-free runtime owns it, and fer.data (the training cache) imports it from here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from fer.classes import IMAGE_SIZE
from fer.errors import DataError

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Images above this many pixels are refused before they are decoded (data.max_image_pixels): a 50-megapixel photo
# decodes to 150 MB; a 1 MB "decompression bomb" PNG of 20000x20000 would take 1.2 GB, in each decoding thread.
DEFAULT_MAX_PIXELS = 50_000_000


def to_gray48(img: np.ndarray) -> tuple[np.ndarray, bool, bool]:
    """Any decoded image (gray, BGR, BGRA; any size) -> (48x48 uint8, was_resized, was_color)."""
    was_color = img.ndim == 3 and img.shape[2] > 1
    img = to_gray_u8(img)
    resized = img.shape != (IMAGE_SIZE, IMAGE_SIZE)
    if resized:
        # INTER_AREA for shrinking (anti-aliased), cubic when a small crop is blown up to 48x48
        shrink = img.shape[0] >= IMAGE_SIZE and img.shape[1] >= IMAGE_SIZE
        img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return img, resized, was_color


def _jpeg_size(data: memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame marker, read without decoding. The walk jumps from segment
    header to segment header, so a large EXIF or ICC block before the frame costs nothing."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:  # markers without a length (0xFF: fill byte)
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def image_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(width, height) read from the file header (JPEG and PNG here, other formats through Pillow's lazy open),
    or None when the header does not tell."""
    head = buf[:32].tobytes()
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(_JPEG_SOI):
        size = _jpeg_size(memoryview(np.ascontiguousarray(buf)))
        if size is not None:
            return size
    return _pillow_size(buf)


def _pillow_size(buf: np.ndarray) -> tuple[int, int] | None:
    import io
    import warnings

    try:
        from PIL import Image
    except ImportError:  # Pillow is optional here: without it only JPEG and PNG headers are read
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own decompression-bomb warning: the caller decides
            with Image.open(io.BytesIO(buf.tobytes())) as img:
                return img.size
    except Image.DecompressionBombError as exc:  # too big even to open
        raise ValueError(f"image too large to open ({exc})") from exc
    except Exception:  # noqa: BLE001 - a format Pillow does not know: OpenCV may still read it
        return None


def decode_bytes(buf: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one encoded image; raises ValueError with the reason when it is not a readable image, or is larger
    than `max_pixels` (checked from its header, before anything is decoded)."""
    if buf.size == 0:
        raise ValueError("empty file")
    size = image_size(buf)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ValueError(f"{size[0]}x{size[1]} pixels, over the limit of {max_pixels:,} (max_image_pixels); "
                         "refused before decoding")
    # libjpeg fills a truncated JPEG with grey and only warns; catch it by the missing end-of-image marker.
    head = buf[:2].tobytes()
    if head == _JPEG_SOI and _JPEG_EOI not in buf[-64:].tobytes():
        raise ValueError("truncated JPEG (no end-of-image marker)")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("not a readable image (OpenCV could not decode it)")
    return img




def to_gray_u8(img: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA; 8 or 16 bit) -> 2-D uint8, same size."""
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[..., 0]
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF: scale to 8 bits rather than clip
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return img


# The largest file an image of max_pixels can be: 16-bit RGBA stored raw (8 bytes a pixel), plus room for metadata.
_BYTES_PER_PIXEL, _METADATA_BYTES = 8, 16 * 2**20


def decode_file(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """decode_bytes on a file's bytes; a file larger than any image of max_pixels could be (a 2 GB file named .jpg)
    is refused from its size, before it is read into memory. ValueError / OSError as decode_bytes."""
    size = os.path.getsize(path)
    if size > max_pixels * _BYTES_PER_PIXEL + _METADATA_BYTES:
        raise ValueError(f"{size:,} bytes, larger than an image within the limit of {max_pixels:,} pixels "
                         "(max_image_pixels) can be; refused before reading")
    return decode_bytes(np.fromfile(path, dtype=np.uint8), max_pixels)


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image file decoded as it is stored (gray, BGR or BGRA); DataError naming the file when it cannot be."""
    try:
        return decode_file(path, max_pixels)
    except (ValueError, OSError, cv2.error) as exc:
        raise DataError(f"{path}: {exc}") from exc


def list_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """The files named by `inputs`, in order: a file as it is, a folder as every file below it (recursively,
    sorted; hidden files such as .DS_Store are not images). Every listed file is read, and one that is not an image
    is reported by name when it is, never skipped here. A missing input or an empty folder raises DataError."""
    files: list[Path] = []
    for spec in inputs:
        p = Path(spec).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            if not found:
                raise DataError(f"{p}: empty folder, no images to read")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"input not found: {p}")
    return files


def to_bgr_u8(img: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA; 8 or 16 bit) -> 3-channel uint8 BGR, same size (what YuNet reads)."""
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(to_gray_u8(img), cv2.COLOR_GRAY2BGR)
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR) if img.shape[2] == 4 else img
