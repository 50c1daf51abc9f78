"""What the entry points (train.py, predict.py, export.py, python -m fer.audit) share: the process-wide settings,
made in one place (setup_process, finish_process) and never as a side effect of importing library code, and one
clear message instead of a traceback wall for errors users can fix."""

from __future__ import annotations

import errno
import gc
import logging
import os
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from omegaconf import OmegaConf

from fer.errors import DataError, UserError

log = logging.getLogger("fer")

# A short random tag per process, in every run folder's name (conf/hydra/default.yaml: ${fer.run_tag:}): two runs
# started in the same second, by hand, by a sweep or by parallel launches, never share a folder. One value per
# process, so the name is the same wherever the config interpolates it.
RUN_TAG = secrets.token_hex(3)


def _training_precision(accelerator: str = "auto") -> str:
    from fer.devices import training_precision

    return training_precision(str(accelerator))


def _in_resumed_run(resume: Any, fresh: str, inside: str) -> str:
    """Where `train.py resume=<run folder>` writes what Hydra writes for every run (conf/hydra/default.yaml):
    `inside` that run folder (its train.log, continued; this session's .hydra record in resumed/<time>), not in a
    new run folder beside it. `fresh` when not resuming, or when the folder holds no run (resume= then says why)."""
    from fer.tracking.run_folder import HYDRA_CONFIG, RunFolder

    if resume is None or not RunFolder(Path(str(resume)).expanduser()).file(HYDRA_CONFIG).is_file():
        return fresh
    return str(Path(str(resume)).expanduser() / inside)


def register_resolvers() -> None:
    """The configs' own resolvers: ${fer.run_tag:}, ${fer.training_precision:${trainer.accelerator}} (bf16
    where the hardware has it natively) and ${fer.in_resumed_run:...}. Called by setup_process, and by what
    composes fer's configs itself (tests, benches); idempotent."""
    if not OmegaConf.has_resolver("fer.run_tag"):
        OmegaConf.register_new_resolver("fer.run_tag", lambda: RUN_TAG)
    if not OmegaConf.has_resolver("fer.in_resumed_run"):
        OmegaConf.register_new_resolver("fer.in_resumed_run", _in_resumed_run)
    if not OmegaConf.has_resolver("fer.training_precision"):
        OmegaConf.register_new_resolver("fer.training_precision", _training_precision)


def setup_process(root: Path, training: bool = False) -> None:
    """First thing an entry point does, and the one place that sets what holds for the whole process: FER_ROOT
    (the checkout, `root`, for the configs' paths), the configs' resolvers, the libraries' noise dropped
    (silence_library_noise: before anything is imported, since some warn on import), and for training torch's
    float32 matmul precision ("high": TF32 matmuls where the GPU has them). Library code sets none of these."""
    os.environ.setdefault("FER_ROOT", str(root))
    register_resolvers()
    silence_library_noise()
    if training:
        import torch

        torch.set_float32_matmul_precision("high")


def finish_process() -> None:
    """Last thing an entry point does, once every file is written and reported: the objects alive now are left out
    of the interpreter's final garbage collections (gc.freeze). With torch and Lightning loaded those took ~1.2 s
    of a 7.5 s predict.py run on a 2-core machine; exit handlers (logging's flush, atexit) still run."""
    gc.freeze()


# Messages the libraries print on every run that a user of fer can do nothing about: an advertisement, and
# warnings about choices fer makes on purpose (two checkpoint callbacks, bf16 model summaries, how torch.export
# handles a CPU model, and the logged MLflow model: fer.tracking.served_model pickles a stateless class).
# "GPU available: False" and its TPU/HPU lines on a machine without them (with a GPU, the line says it is used).
_NO_ACCELERATOR = ("GPU available: False", "TPU available: False", "HPU available: False")
_NOISE_LOGS = {"pytorch_lightning.utilities.rank_zero": ("litlogger", *_NO_ACCELERATOR),
               "lightning.pytorch.utilities.rank_zero": ("litlogger", *_NO_ACCELERATOR),
               "torch._export.non_strict_utils": ("Dim.AUTO",),
               "mlflow.pyfunc": ("Passing a Python object as `python_model`",)}
# the ONNX exporter's optimiser reports each of its passes at INFO level ("Removed 84 unused nodes"); Optuna each study
# it creates (the sweeper says which study it works on itself)
_QUIET_LOGGERS = ("onnx_ir", "onnxscript", "optuna")
_NOISE_WARNINGS = ("No complete tensor found in the group", "is not supported by the model summary",
                   r"\.test\(ckpt_path=\"best\"\)` is called with Trainer configured with multiple",
                   r"`isinstance\(treespec, LeafSpec\)` is deprecated")  # inside Lightning, on every fit


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(f in record.getMessage() for f in self.fragments)


def silence_library_noise() -> None:
    """Drop the messages of _NOISE_LOGS / _NOISE_WARNINGS, and below-warning ones of _QUIET_LOGGERS (idempotent)."""
    import warnings

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, fragments in _NOISE_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(fragments))
    for pattern in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{pattern}")


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Mistakes a user can fix, as one line and exit code 2: ours (DataError, UserError), and a disk that is full
    or closed to writing under any writer that does not say so itself (reports, plots, the audit's files)."""
    from fer.runtime.atomic import target_fault

    try:
        yield
    except (DataError, UserError, OSError) as exc:
        if isinstance(exc, OSError):
            # permission errors are left out: they come from reading too, where "cannot write" would mislead
            fault = None if exc.errno in (errno.EACCES, errno.EPERM) else target_fault(exc)
            if fault is None:
                raise
            exc = UserError(f"cannot write {exc.filename or 'a file'}: {fault[0]} ({fault[1]})")
        print(f"error: {exc}", file=sys.stderr)
        # the run's log file keeps the error too; the console shows it once (the line above), not twice
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (exc,), None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        sys.exit(2)


def check_recipe_for(cfg, script: str, name: str | None = None) -> None:
    """experiment= recipes live in one conf/experiment/ folder for both scripts: refuse one meant for the other.
    `name`: the recipe's name where the config was composed outside a Hydra app."""
    wanted = cfg.get("recipe_for") or script
    if wanted != script:
        if name is None:
            try:
                from hydra.core.hydra_config import HydraConfig

                name = HydraConfig.get().runtime.choices.get("experiment")
            except (ValueError, AttributeError):  # composed outside a Hydra app
                pass
        name = name or "<name>"
        raise UserError(f"experiment={name} is a recipe for {wanted}.py, not {script}.py: "
                        f"python {wanted}.py experiment={name}")


def number_keys_of_targets(cfg) -> list[str]:
    """The keys of the config whose values must be numbers because what the config builds says so: each node with
    a `_target_` (the trainer, the data module, the model, its network, optimiser and scheduler, the callbacks)
    gives the parameters its class or function declares as numbers (fer.config_values.number_parameters). The
    config's own schema, so no list is kept by hand; a target that cannot be imported is left to Hydra to report."""
    import hydra.utils

    from fer.config_values import number_parameters

    keys: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, dict):
            return
        if isinstance(node.get("_target_"), str):
            try:
                numbers = number_parameters(hydra.utils.get_object(node["_target_"]))
            except Exception:  # noqa: BLE001 - Hydra says what is wrong with a target when it builds it
                numbers = set()
            keys.extend(f"{prefix}{name}" for name in sorted(numbers & set(node)))
        for key, child in node.items():
            if not str(key).startswith("_"):
                walk(child, f"{prefix}{key}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return keys


def require_numbers(cfg, keys: tuple[str, ...] | list[str]) -> None:
    """One line for a setting that must be a number and is not (video_every=abc, trainer.max_epochs=3O): caught
    before the value reaches code that would fail on it with a traceback, or, worse, compare it as text."""
    from omegaconf import OmegaConf

    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{key}={value!r} is not a number")


def require_data_root(cfg) -> None:
    """The data source's folder exists (data.root; a typo or a default that is not there): one line before anything
    is created for the run (its MLflow run, its checkpoints), not a failure once training starts."""
    from omegaconf import OmegaConf

    root = OmegaConf.select(cfg, "data.source.root", default=None)
    if root is not None and not Path(str(root)).expanduser().is_dir():
        raise UserError(f"data.root={root}: no such folder (where data={OmegaConf.select(cfg, 'data.name')} is "
                        "read from); set data.root=PATH to the folder that holds your data")


def _composed(argv: list[str], conf_dir: Path, config_name: str):
    """The config the script is about to run, composed as Hydra will (None for --multirun, --cfg and the like,
    which Hydra handles itself, and for a command line Hydra will refuse with its own message)."""
    if any(arg.startswith("-") for arg in argv):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose(config_name, overrides=argv)
    except (HydraException, OmegaConfBaseException):
        return None


def check_config_choices(argv: list[str], conf_dir: str | Path) -> None:
    """`group=name` overrides (model=cnn_dep, data=fer2014, model/optimizer=sgdd) checked against the files of
    conf/<group>/ before Hydra composes: one line with the real choices instead of Hydra's page of search paths,
    and files starting with "_" (shared parts such as model/_base) are not choices. Sweeps (a,b) are checked
    name by name; anything else is left to Hydra."""
    conf_dir = Path(conf_dir)
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        group = conf_dir / key
        if not sep or key.startswith(("~", "hydra")) or "@" in key or not group.is_dir() or "(" in value:
            continue
        choices = sorted(p.stem for p in group.glob("*.yaml") if not p.stem.startswith("_"))
        for name in value.split(","):
            if name and name != "null" and name not in choices:
                raise UserError(f"{key}={name}: no such {key}; choose one of {', '.join(choices)}")


def check_moved_network_keys(argv: list[str], conf_dir: str | Path, config_name: str) -> None:
    """model.<key>=... where <key> is a setting of the model's network (model.dropout=0.2): those moved to
    model.net.<key> with the `net:` node (2026-12-07). For a command line Hydra refuses: one line saying where the
    key went, instead of Hydra's "Could not override"."""
    choices = [arg for arg in argv if "=" in arg and "." not in arg.partition("=")[0]]  # model=mlp, experiment=...
    cfg = _composed(choices, Path(conf_dir), config_name)
    net = OmegaConf.select(cfg, "model.net", default=None) if cfg is not None else None
    if not isinstance(net, Mapping):
        return
    for arg in argv:
        key, _, value = arg.partition("=")
        parts = key.lstrip("+").split(".")
        if len(parts) == 2 and parts[0] == "model" and parts[1] not in cfg.model and parts[1] in net:
            raise UserError(f"{key}: a setting of the model's network, under model.net since 2026-12-07: "
                            f"model.net.{parts[1]}={value}")


def exit_on_bad_command_line(conf_dir: str | Path, config_name: str | None = None) -> None:
    """For the scripts' entry points, before Hydra (which makes the run folder first): the command line's config
    choices and $FER_CACHE_DIR checked, and with `config_name` the composed config's data folder; exit 2 with one
    line on a mistake."""
    from fer.runtime.output_guard import env_cache_dir

    try:
        check_config_choices(sys.argv[1:], conf_dir)
        env_cache_dir()
        cfg = _composed(sys.argv[1:], Path(conf_dir), config_name) if config_name else None
        if cfg is None and config_name:  # Hydra will refuse it: say so first where we know better
            check_moved_network_keys(sys.argv[1:], conf_dir, config_name)
        if cfg is not None:
            # the recipe first: a predict.py recipe names no data folder train.py could read
            experiment = [arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.startswith("experiment=")]
            check_recipe_for(cfg, config_name, experiment[-1] if experiment else None)
            if not cfg.get("resume"):
                require_data_root(cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
