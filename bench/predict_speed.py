"""Wall time of `python predict.py` end to end for 4,038 images (the old challenge's test size), and images/s of
the model part alone; then the same checkpoint exported to ONNX (fp32 and int8) through the torch-free runtime:
time to the first prediction in a fresh interpreter, 4,038 images end to end (`python -m fer.runtime` and
`predict.py ckpt=model.onnx`), the model alone; and frames/s on a 640x480 video with two faces.

    .venv/bin/python bench/predict_speed.py [--ckpt PATH] [--n 4038] [--workdir DIR] [--keep]

Builds a challenge-layout folder in a temp dir (images_test/ = the first 4,038 JPEGs of
/work/shared/fer2013/publictest, then train; synthetic JPEGs when that folder is absent), trains cnn_deep briefly
on synthetic data unless --ckpt is given (the weights do not matter for timing), then runs predict.py as a
subprocess: cold cache, warm cache, TTA (flip), TTA with shifts, fp32, one thread, spinning OpenMP threads. Then
times the model alone
(load_model + fer.inference.engine.predict_array on the cached images) in fp32 and bf16 and reports how often bf16
and fp32 agree on the predicted class.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared")) / "fer2013"


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def build_challenge(root: Path, n: int) -> str:
    """images_train/ (64 images) + challengeA_train.csv + images_test/ (n images). Returns where they came from."""
    import cv2
    import numpy as np

    (root / "images_train").mkdir(parents=True)
    (root / "images_test").mkdir()
    files = []
    if SHARED.is_dir():
        for split in ("publictest", "train"):
            for cls in sorted(p for p in (SHARED / split).iterdir() if p.is_dir()):
                files += sorted(cls.glob("*.jpg"))
            if len(files) >= n + 64:
                break
    if len(files) >= n + 64:
        for f in files[:n]:
            shutil.copyfile(f, root / "images_test" / f.name)
        for f in files[n:n + 64]:
            shutil.copyfile(f, root / "images_train" / f.name)
        train_names = [f.name for f in files[n:n + 64]]
        origin = f"first {n} JPEGs of {SHARED}/publictest (+train)"
    else:
        from fer.data.synthetic import render_faces, synthetic_labels

        labels = synthetic_labels(n + 64, 0)
        faces = np.zeros((n + 64, 48, 48), np.uint8)
        render_faces(labels, 0, 1.0, out=faces)
        for i in range(n):
            cv2.imwrite(str(root / "images_test" / f"test_{i:05d}.jpg"), faces[i])
        train_names = []
        for i in range(64):
            train_names.append(f"train_{i:03d}.jpg")
            cv2.imwrite(str(root / "images_train" / train_names[-1]), faces[n + i])
        origin = f"{n} synthetic JPEGs ({SHARED} not found)"
    rows = "\n".join(f"{name},{i % 7}" for i, name in enumerate(train_names))
    (root / "challengeA_train.csv").write_text("filename,emotion\n" + rows + "\n")
    return origin


def train_checkpoint(work: Path) -> Path:
    out = work / "train"
    cmd = [PY, str(ROOT / "train.py"), "model=cnn_deep", "logger=none", "trainer.max_epochs=1",
           "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1", "trainer.accelerator=cpu", "test=false",
           "data.source.n_train=600", "data.source.n_test=8", "callbacks.model_checkpoint.save_last=false",
           "trainer.enable_progress_bar=false", "data.progress=false",
           f"paths.cache_dir={work / 'train_cache'}", f"hydra.run.dir={out}"]
    subprocess.run(cmd, check=True, cwd=work, capture_output=True, text=True)
    ckpts = sorted((out / "checkpoints").glob("epoch_*.ckpt"))
    if not ckpts:
        raise SystemExit(f"training wrote no checkpoint in {out}")
    return ckpts[0]


def run_predict(name: str, args: list[str], env: dict | None = None) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([PY, str(ROOT / "predict.py"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n")
        raise SystemExit(f"{name}: predict.py failed (exit {proc.returncode})")
    timing = next((line for line in proc.stdout.splitlines() if line.strip().startswith("time ")), "")
    model = re.search(r"([\d.]+) images/s in the model", timing)
    return {"name": name, "wall": wall, "timing": timing.strip(), "model_ips": float(model.group(1)) if model else 0}


def model_only(ckpt: Path, cache_dir: Path, threads: int | None) -> list[tuple[str, float, float]]:
    """(label, seconds, images/s) for the model part alone, fp32 and bf16, no TTA and TTA; plus agreement."""
    import numpy as np
    import torch

    from fer.data.cache import ImageCache
    from fer.models.loading import load_model
    from fer.inference.engine import predict_array

    if threads:
        torch.set_num_threads(threads)
    entry = next(p for p in cache_dir.iterdir() if p.name.startswith("challenge-") and (p / "info.json").is_file())
    cache = ImageCache(entry)
    idx = cache.split_indices("predict")
    model = load_model(ckpt)
    predict_array(model, cache.images, idx[:64], 64)  # warm-up: oneDNN builds its kernels on first use
    predict_array(model, cache.images, idx[:64], 64, dtype=torch.bfloat16)
    out, probs = [], {}
    for label, dtype, tta in (("fp32", None, False), ("bf16", torch.bfloat16, False), ("bf16 + tta flip",
                                                                                        torch.bfloat16, True)):
        t = time.perf_counter()
        p = predict_array(model, cache.images, idx, 512, dtype=dtype, tta=tta)
        dt = time.perf_counter() - t
        probs[label] = p
        out.append((f"{label}, {torch.get_num_threads()} thread(s)", dt, len(idx) / dt))
    agree = float((probs["fp32"].argmax(1) == probs["bf16"].argmax(1)).mean())
    diff = float(np.abs(probs["fp32"] - probs["bf16"]).max())
    out.append((f"bf16 vs fp32: same class for {100 * agree:.2f}% of images, max |dp| {diff:.4f}", 0, 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="checkpoint to time (default: cnn_deep trained briefly on synthetic data)")
    parser.add_argument("--n", type=int, default=4038, help="test images (default 4038)")
    parser.add_argument("--workdir", help="work folder (default: a temp dir, removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fer-predict-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("FER_ROOT", str(ROOT))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as predict.py sets it, for the in-process timings
    try:
        print(f"machine: {os.cpu_count()} CPU(s), {_cpu_model()}; load average at start {load_average()}")
        data = work / "challenge"
        if data.exists():
            shutil.rmtree(data)
        print("data:", build_challenge(data, args.n))
        if args.ckpt:
            ckpt = Path(args.ckpt).resolve()
        else:
            t = time.perf_counter()
            ckpt = train_checkpoint(work)
            print(f"checkpoint: cnn_deep, 4 batches of 128 synthetic faces, 1 epoch ({time.perf_counter() - t:.0f}s): "
                  f"{ckpt}  [timing only: its predictions are not meaningful]")
        cache = work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        common = [f"ckpt={ckpt}", "data=challenge", f"data.root={data}", f"paths.cache_dir={cache}",
                  f"output={work / 'submission.csv'}", "progress=false", f"hydra.run.dir={work / 'predict_run'}"]
        t = time.perf_counter()
        subprocess.run([PY, "-c", "import torch"], check=True)
        t_torch = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([PY, "-c", "import fer.models.loading"], check=True, cwd=ROOT)
        t_fer = time.perf_counter() - t
        print(f"interpreter + imports alone: python -c 'import torch' {t_torch:.1f}s, "
              f"'import fer.models.loading' (torch + Lightning + torchmetrics) {t_fer:.1f}s")
        runs = [("cold cache (decode 4,038 JPEGs), no TTA", common, None),
                ("warm cache, no TTA", common, None),
                ("warm cache, tta=true (flip, 2 views)", common + ["tta=true"], None),
                ("warm cache, tta=true tta_shifts=true (6 views)", common + ["tta=true", "tta_shifts=true"], None),
                ("warm cache, precision=fp32", common + ["precision=fp32"], None),
                ("warm cache, num_threads=1", common + ["num_threads=1"], None),
                ("warm cache, OMP_WAIT_POLICY=ACTIVE (spinning threads, not predict.py's default)", common,
                 {"OMP_WAIT_POLICY": "ACTIVE"})]
        print(f"\npredict.py end to end ({args.n} images, wall time of the subprocess):")
        for name, cmd, env in runs:
            r = run_predict(name, cmd, env)
            print(f"  {r['wall']:6.2f}s  {name}\n           {r['timing']}")
        rows = (data / "images_test").iterdir()
        lines = (work / "submission.csv").read_text().splitlines()
        assert len(lines) - 1 == sum(1 for _ in rows), "row count differs from the images"
        print("\nmodel part alone (load_model + predict_array over the cached uint8 images, batch 512):")
        for threads in (None, 1):
            for label, dt, ips in model_only(ckpt, cache, threads):
                print(f"  {dt:6.2f}s  {ips:7.0f} images/s  {label}" if dt else f"  {label}")
        onnx_section(ckpt, data, work, args.n)
        video_section(work)
        print(f"\nload average at end {load_average()}")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print(f"kept {work}")


def _wall(cmd: list[str], **kw) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}...: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started, proc.stdout


def onnx_section(ckpt: Path, data: Path, work: Path, n: int) -> None:
    """The checkpoint exported (fp32 + int8) and timed through fer.runtime and predict.py."""
    model = work / "model.onnx"
    wall, out = _wall([PY, str(ROOT / "export.py"), f"ckpt={ckpt}", "data=challenge", f"data.root={data}",
                       f"output={model}", "quantize=int8", "overwrite=true", f"paths.cache_dir={work / 'cache'}",
                       "progress=false", f"hydra.run.dir={work / 'export_run'}"])
    print(f"\nexport.py fp32 + int8: {wall:.1f}s")
    for line in out.splitlines():
        print(f"  {line.strip()}")
    first = ("import time, numpy as np\nfrom fer.runtime import ExpressionModel\n"
             "m = ExpressionModel({path!r}); m.predict_proba(np.zeros((1, 48, 48), np.uint8))\n")
    images = data / "images_test"
    print(f"\nfer.runtime (onnxruntime, no torch), {n} images:")
    for label, path in (("fp32", model), ("int8", model.with_name("model.int8.onnx"))):
        first_wall = min(_wall([PY, "-c", first.format(path=str(path))])[0] for _ in range(3))
        cli = min(_wall([PY, "-m", "fer.runtime", str(path), str(images), "--overwrite", "--output",
                         str(work / f"runtime_{label}.csv")])[0] for _ in range(2))
        pred = run_predict(f"predict.py ckpt={label} onnx", [f"ckpt={path}", "data=challenge", f"data.root={data}",
                                                            f"paths.cache_dir={work / 'cache'}", "progress=false",
                                                            f"output={work / f'predict_{label}.csv'}",
                                                            f"hydra.run.dir={work / 'predict_onnx'}"])
        print(f"  {label}: first prediction {first_wall:.2f}s after `python` starts (target <= 1 s); "
              f"python -m fer.runtime end to end {cli:.2f}s (target <= 3 s for fp32); predict.py ckpt=model.onnx "
              f"{pred['wall']:.2f}s, {pred['model_ips']:.0f} images/s in the model")


def video_section(work: Path, frames: int = 240) -> None:
    """Frames per second of classify_video on a 640x480 clip with two faces, every frame (detection + crops +
    work/model.onnx + tracking), per face detector: the default (YuNet, levelled and aligned crops), YuNet without
    levelling, YuNet also searching turned views (turns -30 30), and the Haar cascade."""
    sys.path.insert(0, str(ROOT))
    from fer.data.demo_video import write_two_face_video
    from fer.runtime import ExpressionModel
    from fer.runtime.faces import FaceDetector
    from fer.runtime.video import VideoStats, classify_video

    clip = write_two_face_video(work / "two_faces.mp4", frames=frames, fps=30)
    model = ExpressionModel(work / "model.onnx")
    print(f"\nvideo: {frames} frames of 640x480 with two faces, every frame, {model.path.name} on the faces of a frame "
          "in one batch, IoU tracking:")
    for what, detector in (("default", FaceDetector()), ("", FaceDetector(level=False)),
                           ("", FaceDetector(turns=(-30.0, 30.0))), ("", FaceDetector("haar"))):
        best = None
        for _ in range(2):
            stats = VideoStats()
            rows = list(classify_video(model.predict_proba, str(clip), detector=detector, stats=stats))
            best = stats if best is None or stats.seconds < best.seconds else best
        print(f"  {best.frames_sampled / best.seconds:5.1f} frames/s  {detector.describe()}"
              f"{' (' + what + ')' if what else ''}: {len(rows)} faces found, {best.tracks} face tracks")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
