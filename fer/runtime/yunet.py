"""YuNet, the default face detector: a 0.24 MB anchor-free CNN (Wu, Peng & Yu, "YuNet: A Tiny Millisecond-level
Face Detector", 2023) that also gives five landmarks per face (eyes, nose tip, mouth corners) for alignment.

The models ship inside the package (see models/README.md): nothing is downloaded. yunet_s_dynamic.onnx, the default,
is the network as ShiqiYu/libfacedetection.train publishes it (Apache-2.0). It learned faces from photos, with hair,
ears and outline, and finds a third of FER2013's tight grey crops placed in scenes (docs/BENCHMARKS.md).
yunet_fer.onnx (face_detector=yunet_fer) is the same file plus a copy of its layers from the stride-4 stage on,
fine-tuned on scenes of FER2013 train faces (scripts/finetune_yunet.py): one run gives both sets of outputs, the
original ones unchanged, and nearly all of those faces are found; on real photos turned past 15 degrees it also
reports more false faces, which is why it is not the default. Both run on ONNX Runtime, which the runtime already
needs, rather than through cv2.FaceDetectorYN: on this project's 2-core AVX2 CPU OpenCV's DNN took 25 ms for a
640x480 photo and ONNX Runtime 7 ms (bench/faces.py), and the target is under 15 ms. The decoding below is the one
OpenCV's FaceDetectorYN applies to the same outputs (tests/test_yunet.py checks that both give the same faces).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from fer.runtime.sessions import session_options

# libfacedetection's YuNet, as published: the default, and what scripts/finetune_yunet.py starts from
MODEL_FILE = os.path.join(os.path.dirname(__file__), "models", "yunet_s_dynamic.onnx")
# face_detector=yunet_fer: the same network and outputs, plus a copy of its later layers fine-tuned for FER2013-style
# faces (tight grey crops)
FER_FILE = os.path.join(os.path.dirname(__file__), "models", "yunet_fer.onnx")
STRIDES = (8, 16, 32)  # the three feature maps; the input's sides must be multiples of the largest
OUTPUT_NAMES = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES]  # one set of heads


@dataclass(frozen=True)
class Detection:
    """One face: its box (x, y, w, h in photo pixels), the detector's confidence, and (from YuNet) five landmarks
    [[x, y] x 5]: right eye, left eye (the person's), nose tip, right and left mouth corner."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = None


class YuNet:
    """detect(BGR uint8 image) -> Detections with score >= score_threshold after non-maximum suppression."""

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000,
                 threads: int | None = None, model_file: str = MODEL_FILE):
        import onnxruntime as ort

        self.session = ort.InferenceSession(model_file, session_options(threads), providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        # a file may hold more than one set of heads on its backbone: cls_8, ... and cls_8<suffix>, ...
        # (scripts/finetune_yunet.py adds one); the faces of every set go through one non-maximum suppression
        names = [o.name for o in self.session.get_outputs()]
        self._heads = [name[len("cls_8"):] for name in names if name.startswith("cls_8")]
        self._outputs = [name + head for head in self._heads for name in OUTPUT_NAMES]
        self.score_threshold, self.nms_threshold, self.top_k = float(score_threshold), float(nms_threshold), top_k
        self.model_file = model_file

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        return self.detect_batch(bgr[None])[0]

    def detect_batch(self, bgrs: np.ndarray, score_threshold: float | None = None) -> list[list[Detection]]:
        """detect() for images of one size [N,H,W,3] in one run of the network (a run costs about 1 ms here for
        one 96x96 image, 5 ms for nine: batching is what makes searching a face at several turns cheap)."""
        n, h, w = bgrs.shape[:3]
        pad_h, pad_w = -h % STRIDES[-1], -w % STRIDES[-1]  # zero padding bottom and right, as OpenCV does
        blob = np.pad(bgrs, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        blob = blob.transpose(0, 3, 1, 2).astype(np.float32)  # BGR, 0..255: the model's own normalisation
        out = dict(zip(self._outputs, self.session.run(self._outputs, {self._input: blob})))
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        return [self._decode({k: v[i] for k, v in out.items()}, h + pad_h, w + pad_w, threshold) for i in range(n)]

    def _decode(self, out: dict[str, np.ndarray], h: int, w: int, threshold: float) -> list[Detection]:
        boxes, scores, points = [], [], []
        for head in self._heads:
            one_set = {name: out[name + head] for name in OUTPUT_NAMES}
            for found, into in zip(self._candidates(one_set, h, w, threshold), (boxes, scores, points)):
                into += found
        if not boxes:
            return []
        boxes, scores, points = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
        kept = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), threshold, self.nms_threshold,
                                top_k=self.top_k)
        return [Detection(tuple(int(round(v)) for v in boxes[i]), float(scores[i]), points[i].astype(np.float32))
                for i in np.asarray(kept).reshape(-1)]

    @staticmethod
    def _candidates(out: dict[str, np.ndarray], h: int, w: int, threshold: float):
        """One head set's points scoring >= threshold, decoded as OpenCV's FaceDetectorYN does: per stride, lists of
        boxes [k, 4], scores [k] and landmarks [k, 5, 2]."""
        boxes, scores, points = [], [], []
        for s in STRIDES:
            rows, cols = h // s, w // s
            r, c = np.divmod(np.arange(rows * cols), cols)
            score = np.sqrt(np.clip(out[f"cls_{s}"][:, 0], 0, 1) * np.clip(out[f"obj_{s}"][:, 0], 0, 1))
            keep = score >= threshold
            if not keep.any():
                continue
            r, c, bbox, kps = r[keep], c[keep], out[f"bbox_{s}"][keep], out[f"kps_{s}"][keep]
            cx, cy = (c + bbox[:, 0]) * s, (r + bbox[:, 1]) * s
            bw, bh = np.exp(bbox[:, 2]) * s, np.exp(bbox[:, 3]) * s
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1))
            scores.append(score[keep])
            points.append(np.stack([(kps[:, 0::2] + c[:, None]) * s, (kps[:, 1::2] + r[:, None]) * s], axis=2))
        return boxes, scores, points
