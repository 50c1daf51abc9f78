"""What the served model (fer.tracking.served_model) accepts: 48x48 grayscale images, pixels 0-255.

`as_images` turns what a caller sent into uint8 [N,48,48], or refuses it with one line that says what was wrong and
what is expected. It never guesses: an image in [0,1] or of another size would be answered, wrongly, with a 200.

- dtype: uint8 (the input example and the contract in the model's metadata say so); any other integer or float
  dtype too (JSON clients send int64 or float64, a numpy caller may hold int64 from a CSV) as long as every value
  is an integer 0..255. Strings, bools, objects: refused.
- shape: [N,48,48]; one [48,48] image is taken as a batch of one (the answer has one row).
- an empty batch ([] or [0,48,48]) gets an empty answer.
"""

from __future__ import annotations

import numpy as np

from fer.classes import IMAGE_SIZE

S = IMAGE_SIZE
EXPECTED = f"uint8 images of shape [N,{S},{S}] (or one [{S},{S}] image), pixels 0-255"


def refuse(message: str) -> Exception:
    """The error a caller gets: INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with HTTP 400."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def as_images(data: object) -> np.ndarray:
    """uint8 [N,48,48] for `data` (an array, or the nested lists a JSON payload holds), else an MlflowException."""
    if not isinstance(data, (np.ndarray, list, tuple)):
        raise refuse(f"expected {EXPECTED}, got a {type(data).__name__}")
    try:
        images = np.asarray(data)
    except ValueError as exc:  # numpy: "inhomogeneous shape"
        raise refuse(f"expected {EXPECTED}; the nested lists are ragged (every image is {S} rows of {S} "
                     "pixels)") from exc
    if images.dtype.kind not in "uif" and images.size:
        what = {"b": "booleans", "U": "strings", "S": "bytes", "O": "objects (mixed or missing values)"}
        raise refuse(f"expected {EXPECTED}; got {what.get(images.dtype.kind, f'dtype {images.dtype}')}")
    if images.size == 0 and images.shape in ((0,), (0, S, S)):
        return np.zeros((0, S, S), dtype=np.uint8)
    if images.shape == (S, S):
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (S, S):
        raise refuse(f"expected {EXPECTED}; got shape {list(images.shape)}{_shape_hint(images.shape)}")
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind == "f":
        _check_integral(images)
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        first = int(np.flatnonzero(((images < 0) | (images > 255)).reshape(len(images), -1).any(1))[0])
        raise refuse(f"pixels are integers 0-255; got values from {_number(low)} to {_number(high)} (first in "
                     f"image {first})")
    return images.astype(np.uint8)


def _check_integral(images: np.ndarray) -> None:
    if not np.isfinite(images).all():
        raise refuse("pixels are integers 0-255; got NaN or infinity")
    fractional = images != np.round(images)
    if fractional.any():
        first = int(np.flatnonzero(fractional.reshape(len(images), -1).any(1))[0])
        example = images[first][fractional[first]][0]
        raise refuse(f"pixels are integers 0-255; image {first} has fractional values (e.g. {example:g}); images "
                     "in [0,1] must be multiplied by 255")


def _shape_hint(shape: tuple[int, ...]) -> str:
    if len(shape) == 2 and shape[1] == S * S:
        return f" (flattened images: reshape them to [N,{S},{S}])"
    if len(shape) == 4 and 1 in (shape[1], shape[3]) and S in shape[1:]:
        return " (drop the channel axis: grayscale images are [N,48,48])"
    return ""


def _number(value: np.generic) -> str:
    return f"{value:g}" if isinstance(value, np.floating) else str(int(value))
