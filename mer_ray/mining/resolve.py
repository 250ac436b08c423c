"""A run's config with the machine-dependent defaults filled in (corpus, truth, out, store,
learners), checked before any work, and its few-line console summary."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from mer_ray.config import DEFAULT_LEARNERS, RunConfig
from mer_ray.corpus.demo import demo_corpus
from mer_ray.features.sources import canonical, stream_modality
from mer_ray.features.store import FeatureStore
from mer_ray.learners import FUSIONS, fusion_options
from mer_ray.mining.ensemble import ENSEMBLES
from mer_ray.mining.learner_streams import check_learner_streams, default_learners
from mer_ray.mining.policies import check_roster, create_policy
from mer_ray.storage import Mirror, is_remote, join
from mer_ray.train import check_training


def resolve(cfg: RunConfig) -> RunConfig:
    """Fill in the defaults that depend on the machine: corpus, truth, output, store.

    With `storage` (a folder every node mounts at the same path, or an `s3://` / `gs://` URI)
    the store defaults to <storage>/features and a relative `out` to <storage>/runs/<out>: on a
    cluster the encoder actors, the Ray Train workers and a rerun driver all read and write the
    same files."""
    check_mining(cfg)   # before the demo corpus is generated (a minute), not after
    storage = check_storage(cfg.storage)
    corpus = Path(cfg.corpus) if cfg.corpus else demo_corpus(cfg.seed)
    truth = cfg.truth or (str(corpus / "truth") if (corpus / "truth").is_dir() else None)
    name = cfg.out or time.strftime("%Y%m%d-%H%M%S")
    if storage and not (Path(name).is_absolute() or is_remote(name)):
        out = join(storage, "runs", name)
    else:
        out = cfg.out or str(Path("runs") / name)
    store = cfg.store or (join(storage, "features") if storage else str(corpus / "features"))
    cfg = dataclasses.replace(cfg, corpus=str(corpus), truth=truth, out=out, store=store)
    return resolve_learners(cfg)


def check_mining(cfg: RunConfig) -> None:
    """What would otherwise fail only after the extraction: the policy chain and its options,
    the ensemble, and a noisy view that the folds cannot hold."""
    create_policy(cfg.mining)
    if cfg.mining.ensemble not in ENSEMBLES:
        raise ValueError(f"mining.ensemble {cfg.mining.ensemble!r} is not registered; registered: "
                         f"{', '.join(ENSEMBLES.names())}")
    if cfg.extract.noisy_view and cfg.mining.folds >= 2:
        raise ValueError("extract.noisy_view does not work with mining.folds >= 2: a clip's noisy copy "
                         "would sit in another fold and validate on its own clean copy; use the dev split "
                         "(mining.folds: 0) or turn noisy_view off")


def resolve_learners(cfg: RunConfig) -> RunConfig:
    """npy: folders made absolute; the default learners fitted to the run's streams (when its
    streams are not audio / text / video); every learner's streams checked against the run's."""
    streams = {name: canonical(spec) for name, spec in cfg.extract.streams.items()}
    cfg = dataclasses.replace(cfg, extract=dataclasses.replace(cfg.extract, streams=streams))
    if cfg.learners == DEFAULT_LEARNERS:
        store = FeatureStore(cfg.store) if cfg.store and not is_remote(cfg.store) else None
        modalities = {name: stream_modality(name, spec, store) for name, spec in streams.items()}
        cfg = dataclasses.replace(cfg, learners=default_learners(modalities))
    check_learner_streams(cfg.learners, streams)
    for spec in cfg.learners:   # a misspelt fusion or option stops the run here, not at round 0
        if spec.fusion not in FUSIONS:
            raise ValueError(f"learner {spec.name}: unknown fusion {spec.fusion!r}; registered: {', '.join(FUSIONS.names())}")
        fusion_options(spec.fusion, spec.options, where=f"learner {spec.name}: ")
        check_training(spec)
    check_roster(cfg.mining, len(cfg.learners))
    return cfg


def check_storage(storage: str | None) -> str | None:
    """The shared location: a folder (made absolute) or an object-store URI, checked now so that a
    typo or missing credentials stop the job before any work, not after the extraction."""
    if not storage:
        return None
    if is_remote(storage):
        Mirror.of(storage).check()
        return storage
    return str(Path(storage).resolve())


def _learner(spec) -> str:
    solved = f", L-BFGS over {len(spec.cs)} C" if spec.solver == "lbfgs" else ""
    return f"{spec.name} {spec.fusion}({'+'.join(spec.streams)}{solved})"


def config_summary(cfg: RunConfig) -> str:
    """The resolved config in a few lines (the whole of it is in <out>/config.yaml)."""
    m = cfg.mining
    lines = [f"  corpus {cfg.corpus}  →  out {cfg.out}", f"  store {cfg.store}",
             "  streams: " + ", ".join(f"{n}={s}" for n, s in cfg.extract.streams.items()),
             "  learners: " + "; ".join(_learner(s) for s in cfg.learners),
             f"  mining: {m.rounds} rounds, policy {'+'.join(m.policy)}, "
             + (f"{m.folds}-fold CV" if m.folds >= 2 else f"dev split {m.dev_fraction:g}")
             + f", ensemble {m.ensemble}; seed {cfg.seed}, {cfg.train_workers} Ray Train worker(s)"
             + (", GPU" if cfg.use_gpu else "")]
    return "\n".join(lines)
