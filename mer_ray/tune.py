"""Ray Tune search over each learner's hyper-parameters; the best configurations → learners YAML.

For every learner of a run config, one Tune experiment samples hidden size, learning rate,
dropout, weight decay and batch size with Optuna (TPE) and stops weak trials early with ASHA.
A trial is scored by seed 003's protocol: 5-fold stratified CV on the labeled clips, each fold
early-stopped on its held-out part, the score being the out-of-fold WAF. The folds train in
lockstep and report after every epoch, so ASHA can cut a trial after a few epochs.

    tune_learners(table, labeled_rows, learners, out)   →  <out>/learners.yaml
    python jobs/cyclic_mining.py --learners <out>/learners.yaml

Design choices:
- A trial is a plain Tune *function* trainable running `mer_ray.train.cross_validate` in one
  single-threaded process, not a Ray Train `TorchTrainer`: a TorchTrainer per trial costs about
  20 s of worker-group start-up on this 2-core machine, while a trial itself is seconds of
  single-thread PyTorch (a few thousand feature rows). A function trial costs about one actor
  start, and two trials run side by side on two cores.
- The feature table is put in the object store once per search (`tune.with_parameters`, one
  wrapped trainable shared by every learner's experiment): trials read it zero-copy.
- One experiment per learner, `<out>/ray/tune-<learner>`: learners have different inputs, and
  the best configuration is chosen per learner. Rerunning with the same `out` restores each
  experiment with `Tuner.restore` (finished ones return their results at once, unfinished
  trials restart; a trial is short, so it keeps no checkpoint of its own). A restored
  experiment keeps the search settings it was started with.
- Every trial uses the same seed, so configurations are compared on the same folds and inits.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mer_ray.config import LearnerSpec, RunConfig
from mer_ray.features.table import FeatureTable
from mer_ray.plugins import loaded
from mer_ray.session import init_ray

log = logging.getLogger(__name__)

METRIC = "cv_waf"

# Seed 003 (section 3.6): h in {128, 256}, lr in {1e-3, 1e-4, 1e-5}, dropout 0.3, weight decay
# 1e-5, Adam. The issue also searches dropout, weight decay and batch size, around those values.
# A list is a categorical choice; {"uniform" | "loguniform": [low, high]} a float range;
# {"randint": [low, high]} an integer range (high exclusive).
DEFAULT_SPACE: dict[str, Any] = {
    "hidden": [128, 256],
    "lr": [1e-3, 1e-4, 1e-5],
    "dropout": [0.2, 0.3, 0.5],
    "weight_decay": [1e-6, 1e-5, 1e-4],
    "batch_size": [32, 64],
}
TUNABLE = ("hidden", "lr", "dropout", "weight_decay", "batch_size")


@dataclass(frozen=True)
class SearchConfig:
    """How hard to search; the defaults are seed 003's protocol with a modest trial budget."""
    samples: int = 12            # trials per learner
    max_epochs: int = 40         # the most epochs a trial may train (ASHA's max_t)
    grace_epochs: int = 4        # ASHA never stops a trial before this many epochs
    reduction_factor: int = 3    # ASHA keeps the top 1/3 at each rung
    patience: int = 8            # early stopping within a fold, as in training
    folds: int = 5               # seed 003: five-fold cross-validation
    max_concurrent: int = 0      # 0: as many trials as there are CPUs
    seed: int = 0
    space: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPACE))


@dataclass
class TuneData:
    """What every trial reads: put in the object store once per search."""
    table: FeatureTable          # labeled rows only
    labels: np.ndarray


def search_space(space: dict[str, Any]) -> dict[str, Any]:
    """The YAML-friendly space above → Ray Tune domains (OptunaSearch converts those)."""
    from ray import tune

    unknown = set(space) - set(TUNABLE)
    if unknown:
        raise ValueError(f"cannot tune {sorted(unknown)}; tunable fields are {list(TUNABLE)}")
    domains = {}
    for name, value in space.items():
        if isinstance(value, (list, tuple)):
            domains[name] = tune.choice(list(value))
        elif isinstance(value, dict) and len(value) == 1:
            kind, bounds = next(iter(value.items()))
            makers = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}
            if kind not in makers:
                raise ValueError(f"search space {name}: unknown distribution {kind!r}; use {sorted(makers)} or a list")
            domains[name] = makers[kind](*bounds)
        else:
            raise ValueError(f"search space {name}: expected a list of choices or "
                             f"{{uniform|loguniform|randint: [low, high]}}, got {value!r}")
    return domains


def _starting_point(spec: LearnerSpec, space: dict[str, Any]) -> dict[str, Any]:
    """The learner's own values, tried first (where the space allows them) so the search never
    ends worse than the configuration it started from."""
    point = {}
    for name, value in space.items():
        current = getattr(spec, name)
        if isinstance(value, (list, tuple)):
            allowed = current in value
        else:
            low, high = next(iter(value.values()))
            allowed = low <= current <= high
        if not allowed:
            return {}
        point[name] = current
    return point


def tuned_spec(base: LearnerSpec, config: dict[str, Any]) -> LearnerSpec:
    """`base` with the sampled values, cast to the field types (YAML stays clean)."""
    values = {}
    for name in TUNABLE:
        if name in config:
            kind = type(getattr(base, name))
            values[name] = kind(config[name])
    return dataclasses.replace(base, **values)


def _trial(config: dict[str, Any], data: TuneData, plugins: tuple[str, ...] = ()) -> None:
    """One Tune trial: seed 003's k-fold CV of one configuration, reporting every epoch.
    `plugins`: the driver's --plugin modules, whose fusions the trial may be asked to build."""
    import torch
    from ray import tune

    from mer_ray.plugins import load_plugins
    from mer_ray.train import cross_validate

    load_plugins(plugins)
    torch.set_num_threads(1)      # one trial per core; also makes trials reproducible
    base = LearnerSpec(**{**config["learner"], "streams": tuple(config["learner"]["streams"])})
    spec = dataclasses.replace(tuned_spec(base, config), max_epochs=config["max_epochs"],
                               patience=config["patience"])
    rows = np.arange(len(data.table))

    def report(epoch: int, metrics: dict) -> None:
        tune.report({**metrics, "epoch": epoch})

    cross_validate(spec, data.table, rows, data.labels, folds=config["folds"], seed=config["seed"],
                   on_epoch=report)


def labeled_subset(table: FeatureTable, rows: np.ndarray) -> FeatureTable:
    """Only the rows the search needs, so the object store holds the labeled clips alone.
    (Features keep the normalisation of the full table: trials see what the mining sees.)"""
    rows = np.asarray(rows, np.int64)
    unlabeled = rows[table.label[rows] < 0]
    if len(unlabeled):
        raise ValueError(f"row {unlabeled[0]} ({table.names[unlabeled[0]]}) has no label; tune on labeled rows only")

    def take(value):
        if isinstance(value, np.ndarray) and len(value) == len(table):
            return value[rows]
        if isinstance(value, dict):
            return {k: take(v) for k, v in value.items()}
        return value
    return dataclasses.replace(table, **{f.name: take(getattr(table, f.name))
                                         for f in dataclasses.fields(table)})


def tune_learners(table: FeatureTable, rows: np.ndarray, learners: tuple[LearnerSpec, ...],
                  out: str | Path, search: SearchConfig = SearchConfig(), *,
                  verbose: int = 1) -> Path:
    """Search every learner's hyper-parameters on the labeled `rows` of `table`.

    Writes `<out>/learners.yaml` (a `learners:` list that `mer_ray.config.load_learners` and
    `jobs/cyclic_mining.py --learners` read, plus a `tuning:` summary) and returns its path.
    Rerunning with the same `out` resumes: each learner's experiment is restored.
    """
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    domains = search_space(search.space)
    subset = labeled_subset(table, rows)
    missing = {s for spec in learners for s in spec.streams} - set(subset.streams)
    if missing:
        raise ValueError(f"the feature table has no stream(s) {sorted(missing)}; it has {sorted(subset.streams)}")
    init_ray()
    # One wrapped trainable for every learner: the table goes into the object store once.
    trainable = tune.with_parameters(_trial, data=TuneData(subset, subset.label), plugins=loaded())
    settings = yaml.safe_dump(_plain(dataclasses.asdict(search)), sort_keys=False)
    saved = out / "search.yaml"
    if saved.exists() and saved.read_text() != settings:
        log.warning("%s: the search settings differ from the first run's; restored experiments keep "
                    "the first run's (use a new output folder for a new search)", saved)
    elif not saved.exists():
        saved.write_text(settings)

    tuned, summary = [], {}
    for spec in learners:
        started = time.perf_counter()
        experiment = out / "ray" / f"tune-{spec.name}"
        if tune.Tuner.can_restore(str(experiment)):
            print(f"tune {spec.name}: resuming {experiment}", flush=True)
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
        else:
            point = _starting_point(spec, search.space)
            tuner = tune.Tuner(
                trainable,
                param_space={**domains, "learner": _plain(dataclasses.asdict(spec)),
                             "folds": search.folds, "seed": search.seed,
                             "max_epochs": search.max_epochs, "patience": search.patience},
                tune_config=tune.TuneConfig(
                    metric=METRIC, mode="max", num_samples=search.samples, reuse_actors=True,
                    max_concurrent_trials=search.max_concurrent or None,
                    search_alg=OptunaSearch(points_to_evaluate=[point] if point else None,
                                            seed=search.seed),
                    scheduler=ASHAScheduler(max_t=search.max_epochs, grace_period=search.grace_epochs,
                                            reduction_factor=search.reduction_factor),
                ),
                run_config=tune.RunConfig(name=experiment.name, storage_path=str(experiment.parent),
                                          verbose=verbose),
            )
        results = tuner.fit()
        scored = [r for r in results if r.metrics and METRIC in r.metrics]
        if not scored:
            errors = "; ".join(str(r.error) for r in results if r.error)[:2000]
            raise RuntimeError(f"tune {spec.name}: no trial reported {METRIC}; errors: {errors or 'none'}")
        best = results.get_best_result(metric=METRIC, mode="max", scope="last")
        best_spec = tuned_spec(spec, best.config)
        tuned.append(best_spec)
        summary[spec.name] = {
            METRIC: round(float(best.metrics[METRIC]), 4),
            "epochs": int(best.metrics.get("epoch", 0)),
            "trials": len(results),
            # cut by ASHA: ended before max_epochs, and not by its own patience
            "stopped_early": sum(1 for r in results if r.metrics and r.metrics.get("epoch", 0) < search.max_epochs
                                 and r.metrics["epoch"] - r.metrics.get("best_epoch", 0) < search.patience),
            "config": {k: getattr(best_spec, k) for k in search.space},
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"tune {spec.name}: best {METRIC} {summary[spec.name][METRIC]:.4f} of {len(results)} trials "
              f"with {summary[spec.name]['config']}", flush=True)

    path = out / "learners.yaml"
    document = {"learners": [_plain(dataclasses.asdict(s)) for s in tuned], "tuning": summary}
    header = (f"# written by mer_ray.tune: best configuration per learner ({search.folds}-fold CV WAF)\n"
              f"# use it with: python jobs/cyclic_mining.py --learners {path}\n")
    tmp = path.with_name(".learners.yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(document, sort_keys=False))
    tmp.replace(path)
    return path


def tune_from_store(cfg: RunConfig, out: str | Path, search: SearchConfig = SearchConfig(),
                    *, verbose: int = 1) -> Path:
    """Read the corpus manifest and the Parquet feature store of `cfg` (extracting what is
    missing), then `tune_learners` on its labeled clips."""
    from mer_ray.corpus.manifest import read_corpus
    from mer_ray.features.extract import extract_features
    from mer_ray.features.store import FeatureStore
    from mer_ray.features.table import load_feature_table

    manifest = read_corpus(cfg.corpus)
    store = FeatureStore(cfg.store)
    summary = extract_features(manifest, store, cfg.extract)
    print(summary.line(), flush=True)
    streams = sorted({s for spec in cfg.learners for s in spec.streams})
    table, dropped = load_feature_table(manifest, store, streams)
    labeled = table.rows("train")
    print(f"tuning {len(cfg.learners)} learner(s) on {len(labeled)} labeled clips "
          f"({search.folds}-fold CV, {search.samples} trials each; {len(dropped)} clip(s) left out)", flush=True)
    return tune_learners(table, labeled, cfg.learners, out, search, verbose=verbose)


def _plain(value):
    """Tuples → lists etc., so YAML and Tune configs hold plain values."""
    return json.loads(json.dumps(value))
