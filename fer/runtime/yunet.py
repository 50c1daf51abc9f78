"""YuNet, the face detector: a 0.24 MB anchor-free CNN (Wu, Peng & Yu, "YuNet: A Tiny Millisecond-level Face
Detector", 2023) that also gives five landmarks per face (eyes, nose tip, mouth corners) for alignment.

The models ship inside the package (see models/README.md): nothing is downloaded. yunet_s_dynamic.onnx
(face_detector=yunet) is the network as ShiqiYu/libfacedetection.train publishes it (Apache-2.0). It learned faces
from photos, with hair, ears and outline, and finds a third of FER2013's tight grey crops placed in scenes
(docs/BENCHMARKS.md). yunet_fer.onnx, the default (face_detector=yunet_fer or auto), is the same file plus a copy of
its layers from the stride-4 stage on, fine-tuned on scenes of FER2013 train faces and on real photos
(scripts/finetune_yunet.py): one run gives both sets of outputs, the original ones unchanged, and nearly all of those
faces are found. The faces of every set go through one non-maximum suppression; where both find a face, the
landmarks follow LANDMARKS_SURE; a face the copy alone finds is kept where the photo is grey (GREY_CHROMA).
Both run on ONNX Runtime, which the runtime already needs, rather than through cv2.FaceDetectorYN: on this
project's 2-core AVX2 CPU OpenCV's DNN took 25 ms for a 640x480 photo and ONNX Runtime 7 ms (bench/faces.py), and
the target is under 15 ms. The decoding below is the one OpenCV's FaceDetectorYN applies to the same outputs
(tests/test_yunet.py checks that both give the same faces).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from fer.runtime.sessions import session_options

# libfacedetection's YuNet, as published (face_detector=yunet), and what scripts/finetune_yunet.py starts from
MODEL_FILE = os.path.join(os.path.dirname(__file__), "models", "yunet_s_dynamic.onnx")
# face_detector=yunet_fer, the default: the same network and outputs, plus a copy of its later layers fine-tuned for
# FER2013-style faces (tight grey crops)
FER_FILE = os.path.join(os.path.dirname(__file__), "models", "yunet_fer.onnx")
STRIDES = (8, 16, 32)  # the three feature maps; the input's sides must be multiples of the largest
OUTPUT_NAMES = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES]  # one set of heads
# A face that a later head set reports (yunet_fer's copy) and the first set (the published network) is sure of, at
# this score or more, keeps the first set's landmarks. The copy learned FER2013's template landmarks, which frame a
# real face worse once levelled; where the published network is less sure, on FER2013-style faces, its landmarks are
# the worse ones. Chosen on scenes of the *val* faces (bench/faces.py --source val, 150 scenes, accuracy on the
# faces found): for the copy before this one, 0.560 / 0.571 / 0.594 / 0.590 taking the published landmarks from
# score 0.6 / 0.7 / 0.8 / 0.9 (labelled web photos, bench/expressions.py: 0.806 -> 0.889 end to end against the
# copy's landmarks everywhere). For this copy 150 scenes gave 0.581 / 0.588 / 0.587 / 0.600 (never: 0.596), but
# 1,000 new ones (--scenes 1000 --seed 1) 0.580 at 0.8 and 0.579 at 0.9: no difference, 0.8 stays.
LANDMARKS_SURE = 0.8
# A face only a later head set reports (yunet_fer's copy: no face of the first set overlaps it at IoU >= 0.5) is
# kept only where the photo is grey there: the mean colour of the box's middle half may differ between channels by
# at most this much (0-255). The copy learned FER2013's grey faces; in colour, a face is the published network's to
# find, and the copy's own finds there are mostly hands, badges and records (dlib's photos turned by up to 45
# degrees, bench/photos.py: precision 0.89 without this rule, 0.955 with it, the published network alone 0.947).
# Scene faces measure at most 1.4 (150 val scenes, their sensor noise averages out in the mean): 4 leaves room.
GREY_CHROMA = 4.0


@dataclass(frozen=True)
class Detection:
    """One face: its box (x, y, w, h in photo pixels), the detector's confidence, and (from YuNet) five landmarks
    [[x, y] x 5]: right eye, left eye (the person's), nose tip, right and left mouth corner."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = None


def box_iou(box, boxes) -> np.ndarray:
    """IoU of (x, y, w, h) boxes, 0 where they do not overlap: one box with each of `boxes` [k, 4] -> [k]; or each
    of [m, 4] with each of [k, 4] -> [m, k]."""
    one = np.asarray(box, np.float64)
    a, b = one.reshape(-1, 1, 4), np.asarray(boxes, np.float64).reshape(1, -1, 4)
    lo, hi = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=-1)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)
    return iou[0] if one.ndim == 1 else iou


def colour_spread(bgr: np.ndarray, boxes) -> np.ndarray:
    """How far from grey the middle half of each (x, y, w, h) box is: the spread between the channels' means (0 for
    grey, and for a box with nothing of the image in it). From one integral image: a few lookups per box."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    h, w = bgr.shape[:2]
    x0, x1 = (np.clip(boxes[:, 0] + f * boxes[:, 2], 0, w).astype(int) for f in (0.25, 0.75))
    y0, y1 = (np.clip(boxes[:, 1] + f * boxes[:, 3], 0, h).astype(int) for f in (0.25, 0.75))
    sums = cv2.integral(bgr)  # [h + 1, w + 1, 3]: sums[y, x] = the sum over rows < y and columns < x
    totals = (sums[y1, x1] - sums[y0, x1] - sums[y1, x0] + sums[y0, x0]).astype(np.float64)
    means = totals / np.maximum((x1 - x0) * (y1 - y0), 1)[:, None]
    return np.where((x1 > x0) & (y1 > y0), means.max(axis=1) - means.min(axis=1), 0.0)


def grey_or_shared(bgr: np.ndarray, boxes: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """Which faces stay (GREY_CHROMA): every face of the first head set; a later set's face where the first set finds
    it too (IoU >= 0.5) or the photo is grey there."""
    keep = np.ones(len(boxes), bool)
    later = np.flatnonzero(sets > 0)
    if len(later):
        alone = later[~(box_iou(boxes[later], boxes[sets == 0]) >= 0.5).any(axis=1)]
        keep[alone] = colour_spread(bgr, boxes[alone]) <= GREY_CHROMA
    return keep


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

    def detect_batch(self, bgrs: np.ndarray, score_threshold: float | None = None,
                     sets: tuple[int, ...] | None = None) -> list[list[Detection]]:
        """detect() for images of one size [N,H,W,3] in one run of the network (a run costs about 1 ms here for
        one 96x96 image, 5 ms for nine: batching is what makes searching a face at several turns cheap).
        sets: the head sets whose faces count (None: all; 0 is the published network's)."""
        n, h, w = bgrs.shape[:3]
        pad_h, pad_w = -h % STRIDES[-1], -w % STRIDES[-1]  # zero padding bottom and right, as OpenCV does
        blob = np.pad(bgrs, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        blob = blob.transpose(0, 3, 1, 2).astype(np.float32)  # BGR, 0..255: the model's own normalisation
        out = dict(zip(self._outputs, self.session.run(self._outputs, {self._input: blob})))
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        return [self._decode({k: v[i] for k, v in out.items()}, h + pad_h, w + pad_w, threshold, bgrs[i], sets)
                for i in range(n)]

    def _decode(self, out: dict[str, np.ndarray], h: int, w: int, threshold: float, bgr: np.ndarray,
                sets: tuple[int, ...] | None = None) -> list[Detection]:
        found = []  # per head set that found anything: boxes [k, 4], scores [k], landmarks [k, 5, 2], set index [k]
        for k in range(len(self._heads)) if sets is None else sets:
            head = self._heads[k]
            boxes, scores, points = self._candidates({name: out[name + head] for name in OUTPUT_NAMES}, h, w, threshold)
            if boxes:
                scores = np.concatenate(scores)
                found.append((np.concatenate(boxes), scores, np.concatenate(points), np.full(len(scores), k)))
        if not found:
            return []
        boxes, scores, points, sets = (np.concatenate(parts) for parts in zip(*found))
        # before the suppression: a dropped face of the copy must not suppress a face of the first set
        keep = grey_or_shared(bgr, boxes, sets)
        boxes, scores, points, sets = boxes[keep], scores[keep], points[keep], sets[keep]
        kept = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), threshold, self.nms_threshold, top_k=self.top_k)
        donors = np.flatnonzero((sets == 0) & (scores >= LANDMARKS_SURE))
        detections = []
        for i in np.asarray(kept).reshape(-1):
            landmarks = points[i]
            if sets[i] > 0 and len(donors):  # a later set's face: the first set's landmarks where it is sure of it
                overlap = box_iou(boxes[i], boxes[donors])
                if overlap.max() >= 0.5:
                    landmarks = points[donors[np.argmax(np.where(overlap >= 0.5, scores[donors], -1.0))]]
            detections.append(Detection(tuple(int(round(v)) for v in boxes[i]), float(scores[i]),
                                        landmarks.astype(np.float32)))
        return detections

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
