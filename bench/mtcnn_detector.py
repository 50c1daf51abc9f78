"""MTCNN (Zhang et al. 2016) as a detector for bench/faces.py and bench/photos.py: the other face detector whose
weights ship inside a package on the registry (facenet-pytorch, MIT). Measured here, not shipped: it runs on torch
(the runtime is torch-free), and facenet-pytorch 2.6.0 pins torch < 2.3, so it installs beside ours only without its
dependencies:

    pip install --no-deps facenet-pytorch==2.6.0

Its crops are aligned on its five landmarks (eyes, nose, mouth corners, image-left first as YuNet's) with where they
sit on a FER2013 face, measured the same way as YuNet's (bench/faces.py --calibrate --detectors mtcnn).
"""

from __future__ import annotations

import numpy as np

from fer.runtime.faces import align_face, crop_face
from fer.runtime.yunet import Detection

# bench/faces.py --calibrate --detectors mtcnn (1,000 upright FER2013 *train* faces, of which MTCNN found 877 and
# YuNet 915): median landmarks on the 48x48 face, and the margin that grows MTCNN's box into the FER2013 square
MTCNN_LANDMARKS = np.array([[15.2, 19.0], [33.3, 18.6], [24.5, 28.6], [16.8, 38.0], [32.1, 37.6]], np.float32)
MTCNN_MARGIN = -0.017


class MTCNNDetector:
    """The interface bench/faces.py uses of fer.runtime.faces.FaceDetector: find, crop, margin, backend."""

    backend = "mtcnn"

    def __init__(self, threshold: float = 0.7, min_size: int = 20, margin: float | None = None, align: bool = True,
                 template: np.ndarray = MTCNN_LANDMARKS):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise SystemExit("the mtcnn detector needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0"
                             ) from exc
        # the last stage's threshold is the score a face must reach (all three are facenet-pytorch's defaults); on 150
        # scenes of FER2013 *train* faces 0.7 / 0.8 / 0.9 gave recall 0.52 / 0.49 / 0.45 at precision 0.94 alike
        self._net = MTCNN(keep_all=True, device="cpu", min_face_size=min_size, thresholds=[0.6, 0.7, threshold])
        self.margin = MTCNN_MARGIN if margin is None else float(margin)
        self.align, self.template = bool(align), template

    def find(self, img: np.ndarray) -> list[Detection]:
        rgb = np.ascontiguousarray((img if img.ndim == 3 else np.repeat(img[..., None], 3, 2))[..., ::-1])
        boxes, scores, points = self._net.detect(rgb, landmarks=True)
        if boxes is None:
            return []
        found = [Detection((int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))), float(s),
                           np.asarray(p, np.float32)) for (x0, y0, x1, y1), s, p in zip(boxes, scores, points)]
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))

    def crop(self, gray: np.ndarray, found: Detection) -> np.ndarray:
        aligned = align_face(gray, found.landmarks, self.template) if self.align else None
        return aligned if aligned is not None else crop_face(gray, found.box, self.margin)
