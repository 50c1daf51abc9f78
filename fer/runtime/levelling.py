"""Levelling a turned face before it is cropped: the turn at which YuNet is most sure it sees a face.

YuNet's five landmarks follow a head's roll only partly (on FER2013 faces turned by 25-45 degrees, the roll they
give is 24 degrees off on average), so aligning on them leaves a turned face turned. Its *score*, though, is highest
over a broad band of turns centred on upright (seen on scene faces and on the test photo turned by -35 to 35
degrees). So the face's neighbourhood is cut at a row of turns, YuNet scores each in one batched run, and the face
is taken as upright at the middle of the turns that score within `tolerance` of the best; its landmarks, found again
there, give the crop its turn, and the landmarks found in the photo its size and place (turned_as).

Measured with bench/faces.py on 500 generated scenes of FER2013 *train* faces (655 faces found; the choice was made
there, not on the publictest scenes docs/BENCHMARKS.md reports): the crop's roll error fell from 12.6 to 8.5 degrees
on average (24.4 -> 10.5 on faces turned past 25 degrees), and accuracy on the faces found rose from 0.661 to 0.705,
for about 12 ms per face (two batched runs of YuNet on 96x96 patches).

With yunet_fer the published set's scores judge the turns (JUDGE_SETS), and every set finds the landmarks at the
turn chosen. The copy learned faces turned by up to 45 degrees as faces, so it is as sure of a FER2013 face over a
much broader band of turns, and a band clipped at the row's end puts its middle short of the face's turn: judged by
the best score of both sets, faces turned by 30-45 degrees were levelled about 20 degrees too little (1,000 val
scenes; the turn's error 20.4 degrees on average there, against 12.3 judged by the published set). Judged by the
published set, the crops' roll error fell from 12.0 to 11.1 degrees (val scenes of seeds 2 and 3, 1,000 each), and
accuracy on the faces found rose by 0.8, 0.8 and 0.4 points on those of seeds 1, 2 and 3. A face the published set
finds at no turn (3 in 100 there) is judged by every set, as before.

The landmarks found on the 96-px canvas once framed the whole crop; now they give its turn only. On the same val
scenes (seeds 1-3) the crop's scale was off by 0.12 on average that way (|log| of the ratio to the true one) and
by 0.10 taking it from the photo's own landmarks, found at the photo's resolution (bench/alignment.py); accuracy
on the faces found +0.8, -0.2 and +1.0 points; on labelled real photos (bench/expressions.py) 64 of 72 web photos
against 62, GENKI-4K 0.944 against 0.940 (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from fer.runtime.yunet import YuNet

TURNS = tuple(range(-60, 61, 15))  # degrees; 9 views of each face, one network run
TOLERANCE = 0.05  # score below the best that still counts as "as sure"
CANVAS = 96  # px: the face at FER2013's 48-px scale with room to turn (YuNet finds faces from about 10 px)
OFFSET = 24.0  # where the 48x48 template sits in the canvas
MAX_SHIFT = 10.0  # px: a face found further than this from where the face should be is another face
LOOK_THRESHOLD = 0.2  # the face is known to be there: weak scores still tell turns apart
JUDGE_SETS = (0,)  # whose scores judge the turns: the published network's (yunet_fer: see above)


def level_landmarks(gray: np.ndarray, landmarks: np.ndarray, engine: YuNet, template: np.ndarray,
                    turns: tuple[int, ...] = TURNS, tolerance: float = TOLERANCE) -> np.ndarray:
    """Five landmarks (photo pixels) that frame the face upright: turned as those found again on it turned upright,
    with the size and place of `landmarks` (turned_as); `landmarks` themselves when YuNet finds it at no turn.
    `template`: where the landmarks sit on a 48x48 crop."""
    target = template + OFFSET
    frame, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), target, method=cv2.LMEDS)
    if frame is None:
        return landmarks
    scale, centre = float(np.hypot(frame[0, 0], frame[1, 0])), landmarks.mean(axis=0)
    where = target.mean(axis=0)

    def turned(angle: float) -> np.ndarray:  # photo -> canvas: turn by `angle` about the face, at the template's scale
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), scale)
        m[:, 2] += where - centre
        return m

    def look(matrices: list[np.ndarray], sets: tuple[int, ...] | None = None) -> list[tuple[float, np.ndarray | None]]:
        # a plain warp even for a big face: area-averaging it first measured no better (bench/faces.py, train scenes)
        patches = np.stack([cv2.warpAffine(gray, m, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REPLICATE) for m in matrices])
        out = []
        bgrs = np.repeat(patches[..., None], 3, axis=3)
        for m, found in zip(matrices, engine.detect_batch(bgrs, LOOK_THRESHOLD, sets)):
            near = [d for d in found if np.linalg.norm(d.landmarks.mean(axis=0) - where) <= MAX_SHIFT]
            best = max(near, key=lambda d: d.score, default=None)
            if best is None:
                out.append((0.0, None))
                continue
            back = cv2.invertAffineTransform(m)
            out.append((best.score, best.landmarks @ back[:, :2].T + back[:, 2]))
        return out

    views = [turned(a) for a in turns]
    seen = look(views, JUDGE_SETS)
    scores = np.array([score for score, _ in seen])
    if scores.max() <= 0.0:  # the published network finds it at no turn: every set's scores, as the best there is
        seen = look(views)
        scores = np.array([score for score, _ in seen])
    if scores.max() <= 0.0:
        return landmarks
    sure = [a for a, score in zip(turns, scores) if score >= scores.max() - tolerance]
    upright = (min(sure) + max(sure)) / 2
    _, found = look([turned(upright)])[0]
    if found is None:  # between two turns that found it, the middle did not: keep the surest turn's landmarks
        found = seen[int(scores.argmax())][1]
    return turned_as(found, landmarks, template, scale)


def turned_as(levelled: np.ndarray, landmarks: np.ndarray, template: np.ndarray, scale: float) -> np.ndarray:
    """Landmarks that frame the crop turned as `levelled` frames it, at `scale` (photo -> template) and centred
    where `landmarks` are: the template itself, placed on the photo. The turn is what levelling is for; the size and
    place come from the face as found in the photo, at its own resolution, rather than on the 96-px canvas."""
    fit, _ = cv2.estimateAffinePartial2D(levelled.astype(np.float32), template, method=cv2.LMEDS)
    if fit is None:
        return levelled.astype(np.float32)
    linear = fit[:, :2] * (scale / float(np.hypot(fit[0, 0], fit[1, 0])))
    to_crop = np.hstack([linear, (template.mean(axis=0) - linear @ landmarks.mean(axis=0))[:, None]])
    back = cv2.invertAffineTransform(to_crop)
    return (template @ back[:, :2].T + back[:, 2]).astype(np.float32)
