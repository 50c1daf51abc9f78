"""Predict expressions: a submission CSV from any checkpoint, MLflow run or ensemble.

  python predict.py ckpt=outputs/train/runs/<run>/checkpoints/epoch_012.ckpt data=challenge data.root=DIR \
      output=submission.csv                          # one row per images_test/ file, challenge CSV's header
  python predict.py ckpt=runs:/<run id> ...          # or a bare run id, or ckpt=best (highest val/acc)
  python predict.py ckpt=[a.ckpt,b.ckpt,best] tta=true probabilities=true label_format=name ...
  python predict.py ckpt=best data=fer2013 data.root=../shared/fer2013 split=publictest   # + accuracy, macro-F1
  python predict.py experiment=fer2013_ensemble data.root=../shared/fer2013         # ckpt=[best:cnn_deep,...] + TTA
  python predict.py ckpt=best input=photos/ output=faces.csv face_detect=true annotate=annotated/
  python predict.py ckpt=best input=[a.jpg,b.png] on_bad_image=skip

All options: conf/predict.yaml (print the composed config with --cfg job).
"""

import time

_STARTED = time.perf_counter()

import os  # noqa: E402
from pathlib import Path  # noqa: E402

# OpenMP threads that sleep rather than spin while waiting: same speed on an idle machine, and on a busy, shared
# one (other jobs on the cores) bf16 inference ran ~1.4x faster than with spinning threads (bench/predict_speed.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from fer.cli import exit_on_bad_command_line, finish_process, friendly_errors, setup_process  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from fer.predict.app import run_predict

    with friendly_errors():
        run_predict(cfg, started=_STARTED)


if __name__ == "__main__":
    setup_process(Path(__file__).resolve().parent)
    exit_on_bad_command_line(Path(__file__).resolve().parent / "conf")  # typos and a bad FER_CACHE_DIR: one line
    main()
    finish_process()
