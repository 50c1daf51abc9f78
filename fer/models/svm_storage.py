"""The SVM's fitted scikit-learn pipeline inside a checkpoint, stored so that loading it cannot run code.

New checkpoints hold it as skops bytes (checkpoint["svm_pipeline_skops"]): skops rebuilds only the types it is
told to trust, scikit-learn's own and numpy's by default, plus our HogFeatures, named here by its exact path.

Checkpoints written before (fer 0.1) hold a pickle (checkpoint["svm_pipeline"]). Pickle calls whatever
"module.name" globals the bytes name, so those are read with an unpickler that resolves only the exact
(module, name) pairs a fitted HOG -> StandardScaler -> PCA -> SVC pipeline contains; a dotted name, another
function or any other class is refused before anything is called.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from fer.errors import UserError
from fer.models.hog import HogFeatures

SKOPS_KEY = "svm_pipeline_skops"
LEGACY_PICKLE_KEY = "svm_pipeline"
TRUSTED_TYPES = [f"{HogFeatures.__module__}.{HogFeatures.__qualname__}"]  # besides skops' sklearn/numpy defaults

# (module, name) -> where that object lives now; nothing outside this table is ever looked up
_LEGACY_GLOBALS: dict[tuple[str, str], tuple[str, str]] = {
    ("fer.models.svm", "HogFeatures"): (HogFeatures.__module__, HogFeatures.__qualname__),
    ("sklearn.pipeline", "Pipeline"): ("sklearn.pipeline", "Pipeline"),
    ("sklearn.preprocessing._data", "StandardScaler"): ("sklearn.preprocessing", "StandardScaler"),
    ("sklearn.decomposition._pca", "PCA"): ("sklearn.decomposition", "PCA"),
    ("sklearn.svm._classes", "SVC"): ("sklearn.svm", "SVC"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
}
# numpy's array reconstructors, under their old (numpy.core) and new (numpy._core) module names
for _core in ("numpy.core", "numpy._core"):
    _LEGACY_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = ("numpy._core.multiarray", "_reconstruct")
    _LEGACY_GLOBALS[(f"{_core}.multiarray", "scalar")] = ("numpy._core.multiarray", "scalar")
    _LEGACY_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = ("numpy._core.numeric", "_frombuffer")


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        target = _LEGACY_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a fitted HOG/SVM pipeline never "
                                         "holds")
        import importlib

        return getattr(importlib.import_module(target[0]), target[1])


def dump_pipeline(pipeline: Any) -> dict[str, bytes]:
    """Checkpoint entries holding `pipeline`."""
    import skops.io

    return {SKOPS_KEY: skops.io.dumps(pipeline)}


def load_pipeline(checkpoint: dict) -> Any | None:
    """The pipeline stored in a checkpoint (either format), or None when the checkpoint holds none."""
    if checkpoint.get(SKOPS_KEY) is not None:
        import skops.io

        data = checkpoint[SKOPS_KEY]
        try:
            untrusted = [t for t in skops.io.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
            if untrusted:
                raise ValueError(f"it holds types a fitted HOG/SVM pipeline never holds: {', '.join(untrusted)}")
            return skops.io.loads(data, trusted=TRUSTED_TYPES)
        except Exception as exc:  # noqa: BLE001 - skops raises many kinds for foreign or damaged data
            raise UserError(f"refusing its SVM pipeline ({str(exc).splitlines()[0]})") from exc
    if checkpoint.get(LEGACY_PICKLE_KEY) is not None:
        try:
            return _LegacyUnpickler(io.BytesIO(checkpoint[LEGACY_PICKLE_KEY])).load()
        except Exception as exc:  # noqa: BLE001 - a refused global, or damaged bytes
            raise UserError(f"refusing its SVM pipeline ({str(exc).splitlines()[0]}); a checkpoint "
                            "written by fer's own train.py model=svm loads, else re-train it the same way") from exc
    return None
