"""The conf/experiment/ recipes: every train recipe composes as users call it and builds its model, data,
callbacks, trainer and optimiser; the CPU recipe trains end to end (on a tiny FER2013-style folder instead of the
real data); the predict recipes (ensembles) are refused by train.py. A new recipe file is covered with no test
edits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers import CONF, FAST, ROOT, compose_train, nll, score_test_split

RECIPES = {p.stem: OmegaConf.load(p).get("recipe_for", "train")
           for p in sorted((CONF / "experiment").glob("*.yaml")) if not p.stem.startswith("_")}
TRAIN_RECIPES = [name for name, script in RECIPES.items() if script == "train"]
PREDICT_RECIPES = [name for name, script in RECIPES.items() if script == "predict"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recipes_name_registered_models(tmp_path):
    """A recipe may exist for any model (a new model needs none); the ones that exist name registered models."""
    from fer.models.loading import configured_model_name
    from fer.models.registry import list_models

    for recipe in TRAIN_RECIPES:
        cfg = compose_train(tmp_path, [f"experiment={recipe}"])
        assert configured_model_name(cfg.model) in list_models(), recipe
    for recipe in PREDICT_RECIPES:
        members = OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{recipe}.yaml"))["ckpt"]
        assert {m.partition(":")[2] for m in members if m.startswith("best:")} <= set(list_models()), recipe
        cfg = compose_train(tmp_path, [f"experiment={recipe}"], config_name="predict")
        assert len(list(cfg.ckpt)) == len(members) and cfg.recipe_for == "predict"  # composes and resolves


# The recipe users run on a CPU; the others are composed and built, not trained (a fit costs seconds each)
TRAINED_RECIPE = "fer2013_cnn_deep"


def _recipe_config(recipe: str, folder_dataset: Path, tmp_path: Path):
    # FAST's synthetic-data overrides do not apply to folder data
    fast = [o for o in FAST if not o.startswith("data.source.")]
    cfg = compose_train(tmp_path, [f"experiment={recipe}", f"data.root={folder_dataset}", "logger=none",
                                   "data.val_fraction=0.2", *fast])
    # the GPU recipes score the mirror view only (predict.py tta=true, what their ensemble uses)
    views = "flip" if recipe.endswith("_gpu") else "flip_shifts"
    assert cfg.data.source._target_.endswith("FolderSource") and cfg.model.test_tta == views
    assert cfg.run_name.startswith(recipe) and cfg.experiment_name.startswith("fer2013-")
    return cfg, views


@pytest.mark.parametrize("recipe", TRAIN_RECIPES)
def test_recipe_builds_everything_it_trains_with(recipe, folder_dataset, tmp_path):
    """Each recipe's model, data, callbacks, trainer and optimiser are built from the composed config as train.py
    builds them: a mistyped key or a value a class refuses fails here, without a training run."""
    import hydra
    import pytorch_lightning as pl

    from fer.training import instantiate_model, instantiate_trainer

    cfg, _ = _recipe_config(recipe, folder_dataset, tmp_path)
    model = instantiate_model(cfg.model)
    datamodule = hydra.utils.instantiate(cfg.data)
    trainer = instantiate_trainer(cfg, loggers=[])
    assert isinstance(trainer, pl.Trainer) and isinstance(datamodule, pl.LightningDataModule)
    datamodule.setup("fit")  # reads the folder, draws the val split
    hp = model.hparams
    if hp.get("optimizer"):  # the optimiser and schedule (sizes the Trainer fills in given as 100)
        optimizer = hydra.utils.instantiate(hp.optimizer, params=model.parameters())
        if hp.get("scheduler"):
            hydra.utils.instantiate({k: 100 if v == "auto" else v for k, v in dict(hp.scheduler).items()
                                     if k not in ("monitor", "interval")}, optimizer=optimizer)
    else:
        assert model.model_name == "svm"


def test_the_cpu_recipe_trains_on_fer2013_folders_and_scores_tta(folder_dataset, tmp_path):
    from fer.training import run_training

    cfg, views = _recipe_config(TRAINED_RECIPE, folder_dataset, tmp_path)
    metrics = run_training(cfg)
    # one run reports the test split with and without TTA: exactly what its tested checkpoint scores
    from fer.models.loading import load_model

    (best,) = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")
    model = load_model(best)
    for prefix, tta in (("test", False), ("test_tta", True)):
        probs, labels = score_test_split(cfg, model, tta=tta, tta_shift=0 if views == "flip" else None)
        assert len(labels) == 14  # the fixture's PublicTest folder
        assert metrics[f"{prefix}/acc"] == pytest.approx(float((probs.argmax(1) == labels).mean()), abs=1e-6)
        assert metrics[f"{prefix}/loss"] == pytest.approx(nll(probs, labels, cfg.model.label_smoothing), rel=1e-4,
                                                      abs=1e-5)


def test_tta_views_include_the_mirror_and_bad_names_are_refused():
    """test_tta=flip really averages in the mirrored view (a model that reads one corner pixel sees both halves),
    and an unknown test_tta value fails at construction, not after training."""
    import torch

    from fer.tta import NAMED_VIEWS, tta_proba

    assert set(NAMED_VIEWS) == {"none", "flip", "flip_shifts"}
    x = torch.zeros(4, 1, 48, 48)
    x[..., :24] = 1.0  # left half bright

    def left_pixel(batch):  # class 0 if the top-left pixel is bright, else class 1
        p = torch.zeros(len(batch), 7)
        p[:, 0] = batch[:, 0, 0, 0]
        p[:, 1] = 1 - batch[:, 0, 0, 0]
        return p

    assert tta_proba(left_pixel, x, *NAMED_VIEWS["flip"])[:, :2].tolist() == [[0.5, 0.5]] * 4
    with pytest.raises(ValueError, match="test_tta"):
        from helpers import classifier

        classifier("mlp", test_tta="mirror")


@pytest.mark.parametrize("recipe", PREDICT_RECIPES)
def test_predict_recipe_is_refused_by_train(recipe):
    out = subprocess.run([sys.executable, "train.py", f"experiment={recipe}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert f"experiment={recipe} is a recipe for predict.py" in out.stderr
