"""Export a trained model to ONNX, for fer.runtime (no torch needed) or any ONNX runtime:

  python export.py ckpt=outputs/train/runs/<run>/checkpoints/epoch_012.ckpt output=model.onnx
  python export.py ckpt=best:cnn_deep data=fer2013 data.root=../shared/fer2013 quantize=int8   # + model.int8.onnx

The file takes uint8 grayscale faces [N,48,48] and returns calibrated probabilities [N,7]; it is checked against
the checkpoint on images of `data=` before it is kept. All options: conf/export.yaml.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from fer.cli import exit_on_bad_command_line, finish_process, friendly_errors, setup_process


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from fer.export.app import run_export

    with friendly_errors():
        run_export(cfg)


if __name__ == "__main__":
    setup_process(Path(__file__).resolve().parent)
    exit_on_bad_command_line(Path(__file__).resolve().parent / "conf")  # typos and a bad FER_CACHE_DIR: one line
    main()
    finish_process()
