"""Settings that must be numbers are known from what reads them, not from a list kept by hand: for train.py, the
parameters the config's classes declare as numbers (fer.cli.number_keys_of_targets); for predict.py, the fields its
typed settings declare as numbers (fer.predict.settings). A word there is one line, before anything runs."""

from __future__ import annotations

import pytest

from fer.errors import UserError

from helpers import CONF, compose_train

# the lists train.py and predict.py kept by hand until 2026-12-07: every key of them is still checked
HAND_KEPT_TRAIN = ("seed", "trainer.max_epochs", "trainer.min_epochs", "trainer.log_every_n_steps",
                   "data.batch_size", "data.augment_copies", "data.eval_batch_size", "data.val_fraction",
                   "data.split_seed", "model.optimizer.lr", "model.optimizer.weight_decay", "model.label_smoothing")
HAND_KEPT_PREDICT = ("batch_size", "num_threads", "tta_shift", "max_image_pixels", "face_margin",
                     "face_score_threshold", "face_upscale", "face_min_size", "face_min_neighbors",
                     "face_scale_factor", "face_max_side", "video_every", "video_fps", "video_smooth",
                     "video_max_frames")


def test_train_number_keys_come_from_what_the_config_builds(tmp_path):
    from fer.training import number_keys

    keys = set(number_keys(compose_train(tmp_path, ["model=cnn_deep"])))
    assert set(HAND_KEPT_TRAIN) <= keys
    # and what the list never had: the network's, the scheduler's and the callbacks' numbers
    assert {"model.net.fc_dropout", "model.scheduler.patience", "callbacks.time_budget.minutes"} <= keys


@pytest.mark.parametrize("setting", ["model.net.dropout=abc", "trainer.max_epochs=3O", "seed=x",
                                     "callbacks.early_stopping.patience=many", "model.optimizer.lr=fast"])
def test_a_word_where_train_needs_a_number_is_one_line(setting, tmp_path):
    from fer.training import validate_config

    key, value = setting.split("=")
    with pytest.raises(UserError, match=f"^{key}='{value}' is not a number$"):
        validate_config(compose_train(tmp_path, ["model=mlp", setting]))


def _shipped_choices() -> list[str]:
    groups = ["model", "model/optimizer", "model/scheduler", "callbacks", "trainer", "data", "logger"]
    choices = [f"{group}={p.stem}" for group in groups for p in sorted((CONF / group).glob("*.yaml"))
               if not p.stem.startswith("_")]
    recipes = [p.stem for p in sorted((CONF / "experiment").glob("*.yaml")) if not p.stem.startswith("_")]
    return choices + [f"experiment={r}" for r in recipes if "recipe_for: predict" not in
                      (CONF / "experiment" / f"{r}.yaml").read_text()]


@pytest.mark.parametrize("choice", _shipped_choices())
def test_every_shipped_config_passes_its_own_number_check(choice, tmp_path, monkeypatch):
    """Scheduler sizes given as "auto" (filled from the Trainer) are the one text a number key may hold."""
    from fer.cli import require_numbers
    from fer.training import number_keys

    monkeypatch.setenv("FER_EFFICIENTNET_WEIGHTS", "efficientnet_lite0_imagenet")
    cfg = compose_train(tmp_path, [choice])
    require_numbers(cfg, number_keys(cfg))


def test_predict_number_keys_are_the_typed_settings_numbers(tmp_path):
    from fer.predict.settings import PredictSettings

    keys = PredictSettings.number_keys()
    assert set(HAND_KEPT_PREDICT) <= set(keys)
    cfg = compose_train(tmp_path, [], config_name="predict")
    assert [key for key in keys if key not in cfg] == []  # each is a key of conf/predict.yaml
