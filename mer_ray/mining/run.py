"""The whole run: corpus → manifest → features (Ray Data) → mining rounds (Ray Train) → outputs.

`run_cyclic_mining(RunConfig())` is what `python jobs/cyclic_mining.py` does with no arguments.
The console gets the short config (the full one is saved), one line per stage (extraction with a
periodic progress line), the per-round table once, row by row as rounds finish
(`mer_ray.mining.progress`), and the final summary; the corpus's bad rows are left out and
listed in `<out>/problems.csv` (`strict=True` refuses them instead).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import ray
from ray.train import FailureConfig, RunConfig as TrainRunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from mer_ray import console
from mer_ray.config import DEFAULT_LEARNERS, RunConfig
from mer_ray.corpus.manifest import load_corpus, write_manifest
from mer_ray.corpus.noise import Corruption, NoiseBank
from mer_ray.corpus.truth import read_truth
from mer_ray.features.extract import ExtractSummary, extract_features, plan
from mer_ray.features.sources import canonical, import_npy_streams, stream_modality
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import NOISY_VIEW, load_feature_table, save_norm, with_noisy_view
from mer_ray.labels import EMOTIONS
from mer_ray.metrics import confusion
from mer_ray.mining.cycle import (NOISY_TEST_KEYS, MiningData, final_round, mining_loop,
                                  stratified_split)
from mer_ray.mining.ensemble import ensemble
from mer_ray.mining.learner_streams import check_learner_streams, default_learners
from mer_ray.mining.progress import RoundPrinter
from mer_ray.mining.state import read_rounds, round_dir, write_json
from mer_ray.report import write_report
from mer_ray.storage import Mirror, is_remote, join

DEMO_CACHE = Path(".cache")
RAY_DIR = "ray"   # Ray Train's own files inside a run folder


def demo_corpus(seed: int = 0, root: Path = DEMO_CACHE) -> Path:
    """The generated demo corpus, made on first use and reused after (free when complete).

    The folder name carries a digest of the generator's config, so a changed generator never
    silently reuses a stale corpus."""
    from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus

    cfg = DemoCorpusConfig(seed=seed, noisy_test=True)   # + MER-NOISE copies of the test clips
    digest = hashlib.sha1(repr(cfg).encode()).hexdigest()[:8]
    path = root / f"demo-corpus-seed{seed}-{digest}"
    if not (path / "corpus.json").exists():
        print(f"generating the demo corpus into {path} (once) ...", flush=True)
    return make_demo_corpus(path, cfg)


def init_ray() -> None:
    """Join the cluster when there is one (RAY_ADDRESS, `ray job submit`), else start a local
    Ray with its dashboard on 127.0.0.1 only; Ray's own logs stay in the session log unless the
    job runs with --verbose (`mer_ray.console`)."""
    console.init_ray()


def resolve(cfg: RunConfig) -> RunConfig:
    """Fill in the defaults that depend on the machine: corpus, truth, output, store.

    With `storage` (a folder every node mounts at the same path, or an `s3://` / `gs://` URI)
    the store defaults to <storage>/features and a relative `out` to <storage>/runs/<out>: on a
    cluster the encoder
    actors, the Ray Train workers and a rerun driver all read and write the same files."""
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
    return cfg


def config_summary(cfg: RunConfig) -> str:
    """The resolved config in a few lines (the whole of it is in <out>/config.yaml)."""
    m = cfg.mining
    lines = [f"  corpus {cfg.corpus}  →  out {cfg.out}", f"  store {cfg.store}",
             "  streams: " + ", ".join(f"{n}={s}" for n, s in cfg.extract.streams.items()),
             "  learners: " + "; ".join(f"{s.name} {s.fusion}({'+'.join(s.streams)})" for s in cfg.learners),
             f"  mining: {m.rounds} rounds, policy {'+'.join(m.policy)}, "
             + (f"{m.folds}-fold CV" if m.folds >= 2 else f"dev split {m.dev_fraction:g}")
             + f", ensemble {m.ensemble}; seed {cfg.seed}, {cfg.train_workers} Ray Train worker(s)"
             + (", GPU" if cfg.use_gpu else "")]
    return "\n".join(lines)


def check_storage(storage: str | None) -> str | None:
    """The shared location: a folder (made absolute) or an object-store URI, checked now so that a
    typo or missing credentials stop the job before any work, not after the extraction."""
    if not storage:
        return None
    if is_remote(storage):
        Mirror.of(storage).check()
        return storage
    return str(Path(storage).resolve())


def extract_with_progress(manifest: pd.DataFrame, store: FeatureStore, extract_cfg, **kwargs):
    """`extract_features` with a progress line every 10 s (features written to the store so far),
    after the first use of any `npy:` (MERTools) stream."""
    imported = import_npy_streams(dict(extract_cfg.streams), store, manifest["name"])
    for stream, count in imported.items():
        if count:
            print(f"imported {count} clips of stream {stream} from {extract_cfg.streams[stream]}", flush=True)
    # the imported streams are complete now; the encoders run for the others only
    encoded = {s: spec for s, spec in extract_cfg.streams.items() if s not in imported}
    if not encoded:
        return ExtractSummary()
    extract_cfg = dataclasses.replace(extract_cfg, streams=encoded)
    todo = plan(manifest, store, encoded)
    total = sum(len(names) for names in todo.values())
    before = {s: set(store.part_files(s)) for s in todo}

    def written() -> int:
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(p).num_rows for s in todo for p in store.part_files(s) if p not in before[s])

    with console.Ticker("extraction", total, written, unit="features"):
        return extract_features(manifest, store, extract_cfg, **kwargs)


def prepare_data(cfg: RunConfig, *, strict: bool = False) -> tuple[MiningData, pd.DataFrame]:
    """Manifest, feature extraction (only what is missing), the aligned table and the splits."""
    manifest, _ = load_corpus(cfg.corpus, strict=strict, report_dir=cfg.out)
    write_manifest(manifest, Path(cfg.out) / "manifest.parquet")
    counts = manifest["split"].value_counts().to_dict()
    print(f"corpus {cfg.corpus}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)

    store = FeatureStore(cfg.store)
    summary = extract_with_progress(manifest, store, cfg.extract)
    print(summary.line(), flush=True)

    table, dropped = load_feature_table(manifest, store, sorted(cfg.extract.streams))
    save_norm(table.norm, Path(cfg.out) / "norm.npz")   # jobs/predict.py scales new clips the same way
    noisy_rows = noisy_source = np.zeros(0, np.int64)
    if cfg.extract.noisy_view:
        views = extract_noisy_view(cfg, manifest, store)
        labeled_names = manifest.loc[manifest["split"] == "train", "name"]
        table, noisy_rows, noisy_source = with_noisy_view(table, store, views, labeled_names)
    truth = read_truth(cfg.truth)
    labeled = np.setdiff1d(table.rows("train"), noisy_rows)
    # with folds every labeled clip is fitted and held out once (seed 003): no dev split
    dev_fraction = 0.0 if cfg.mining.folds >= 2 else cfg.mining.dev_fraction
    train, dev = stratified_split(table.label, labeled, dev_fraction, cfg.seed)
    # canaries: labeled clips hidden from training and put in the pool, so pseudo-label
    # precision is measured on real labels too, not only on the demo's truth
    train, canaries = stratified_split(table.label, train, cfg.mining.canary_fraction, cfg.seed + 1)
    # a noisy view trains only beside its own clean clip: the split is by source clip, so the
    # dev split (and the canaries) never see a copy of a clip the learners fit on
    train = np.union1d(train, noisy_rows[np.isin(noisy_source, train)])
    is_test = np.array([n in truth.held_out for n in table.names])   # clean and noisy test: never mined
    unlabeled = table.split != "train"
    test = np.flatnonzero(unlabeled & np.array([n in truth.test for n in table.names]))
    noisy_test = np.flatnonzero(unlabeled & np.array([n in truth.noisy_test for n in table.names]))
    pool_truth = truth.labels(table.names, truth.pool)
    pool_truth[canaries] = table.label[canaries]
    data = MiningData(
        table=table, train=train, dev=dev,
        pool=np.union1d(np.flatnonzero(unlabeled & ~is_test), canaries),  # test clips are never mined
        test=test,
        test_labels=truth.labels(table.names[test], truth.test),
        pool_truth=pool_truth,
        canaries=canaries,
        noisy_test=noisy_test,
        noisy_test_labels=truth.labels(table.names[noisy_test], truth.noisy_test),
    )
    views_in_train = len(np.intersect1d(train, noisy_rows))
    print(f"learners fit on {len(train)} labeled clips{f' ({len(train) - views_in_train} + their noisy views)' if views_in_train else ''} "
          f"(+{len(dev)} dev), pool {len(data.pool)} ({len(canaries)} canaries), held-out test {len(test)}"
          f"{f' + {len(noisy_test)} noisy' if len(noisy_test) else ''}, left out {len(dropped)}", flush=True)
    return data, manifest


def extract_noisy_view(cfg: RunConfig, manifest: pd.DataFrame, store: FeatureStore) -> dict[str, str]:
    """Seed 003's MER-NOISE augmentation: extract the labeled clips once more, corrupted right
    after decoding, into sibling streams `<stream>@noisy-<recipe>` of every audio / video stream
    (transcripts are not corrupted). Returns {stream: its noisy stream}."""
    from mer_ray.encoders import encoder_modality

    if cfg.mining.folds >= 2:
        raise ValueError("extract.noisy_view does not work with mining.folds >= 2: a clip's noisy copy "
                         "would sit in another fold and validate on its own clean copy; use the dev split "
                         "(folds: 0) or turn noisy_view off")
    labeled = manifest[manifest["split"] == "train"]
    videos = [v for v in labeled["video"] if isinstance(v, str)]
    noise = (NoiseBank.from_folder(cfg.extract.noise_dir) if cfg.extract.noise_dir
             else NoiseBank.babble_from_clips(videos, seed=cfg.seed))
    corruption = Corruption(noise, seed=cfg.seed)
    views = {}
    for stream, spec in cfg.extract.streams.items():
        try:
            modality = encoder_modality(spec)
        except KeyError as err:
            raise ValueError(f"extract.noisy_view re-extracts stream {stream!r} from corrupted clips, but "
                             f"{spec!r} is not an encoder mer-ray runs ({err}); turn noisy_view off") from None
        if modality != "text":
            views[stream] = f"{stream}{NOISY_VIEW}-{corruption.digest()}"
    view_cfg = dataclasses.replace(cfg.extract, streams={views[s]: cfg.extract.streams[s] for s in views})
    summary = extract_features(labeled, store, view_cfg, corruption=corruption)
    print(f"noisy view ({noise.source}, SNR {corruption.snr_range[0]:g}-{corruption.snr_range[1]:g} dB, "
          f"r in {list(corruption.factors)}): {summary.line()}", flush=True)
    return views


def run_cyclic_mining(cfg: RunConfig, *, strict: bool = False, mlflow: str | None = None) -> Path:
    """The run (see the module docstring). `strict`: refuse a corpus with bad rows instead of
    leaving them out; `mlflow`: log it to MLflow ("" = ./mlruns, a folder or a tracking URI)."""
    cfg = resolve(cfg)
    # An object-store run works on a local mirror of its folder: pulled first (a rerun resumes
    # from the bucket's rounds), each round pushed by the workers as it completes, the rest at the end.
    mirror = Mirror.of(cfg.out) if is_remote(cfg.out) else None
    if mirror:
        pulled = mirror.pull(skip=(RAY_DIR + "/",))
        print(f"run {cfg.out}: {pulled} files pulled into {mirror.local}", flush=True)
    remote, cfg = cfg.out, (dataclasses.replace(cfg, out=str(mirror.local)) if mirror else cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    print("mer-ray cyclic mining\n" + config_summary(cfg) + f"\n  (full config: {out / 'config.yaml'})", flush=True)
    (out / "config.yaml").write_text(cfg.dumps())
    tracker = None
    if mlflow is not None:
        from mer_ray.tracking import MlflowTracker

        tracker = MlflowTracker(mlflow, out)
        tracker.start(cfg.to_dict(), cfg.dumps())
        print(f"MLflow: run {tracker.run_id} in {tracker.uri}", flush=True)
    try:
        final, report = _run(cfg, out, remote=remote if mirror else None, strict=strict,
                             on_round=[tracker.log_round] if tracker else [])
    except BaseException:
        if tracker:
            tracker.finish(None, status="FAILED")
        raise
    if tracker:
        tracker.finish(final)
    print(f"final: test WAF {final['test_waf']}  ACC {final['test_acc']}  "
          f"UAR {final['test_uar']}; mined {final['mined_total']} clips")
    if final.get("noisy_test_waf") is not None:
        print(f"noisy test (MER-NOISE): WAF {final['noisy_test_waf']}  ACC {final['noisy_test_acc']}  "
              f"UAR {final['noisy_test_uar']}")
    if mirror:
        mirror.push_tree(last=("state.json",))
        print(f"uploaded to {remote}", flush=True)
    problems = " problems.csv," if (out / "problems.csv").exists() else ""
    print(f"outputs in {out}: predictions.csv, predictions-mer2023.csv, metrics.json, {report.name},{problems} "
          f"round-*/ (vote tables, checkpoints); Ray's logs: {console.log_location()}", flush=True)
    return out


def _run(cfg: RunConfig, out: Path, *, remote: str | None, strict: bool, on_round) -> tuple[dict, Path]:
    init_ray()
    if not cfg.storage and len([n for n in ray.nodes() if n["Alive"]]) > 1:
        print("warning: a multi-node cluster without --storage: workers on other nodes write the "
              "feature store and round state to their own disks; pass --storage <shared folder>", flush=True)

    data, _ = prepare_data(cfg, strict=strict)
    data_ref = ray.put(data)   # once: every worker, round and baseline reads the same arrays
    # The driver keeps names, splits and labels only: the feature matrices now live in the
    # object store, and a second copy here would double the run's peak memory at MER scale.
    data = dataclasses.replace(data, table=dataclasses.replace(data.table, streams={}))
    where = f"{cfg.train_workers} Ray Train workers" if cfg.train_workers else "the driver process"
    print(f"mining: round 0 + {cfg.mining.rounds} rounds, {len(cfg.learners)} learners in {where}; "
          f"a row per round as it finishes:", flush=True)
    train(cfg, data_ref, remote=remote, on_round=on_round)
    if remote:
        Mirror(remote, out).pull(skip=(RAY_DIR + "/",))   # the checkpoints of learners trained on other nodes
    final = finalize(cfg, data)
    if cfg.baselines:
        run_baselines(cfg, data, data_ref)
    return final, write_report(out)


def learner_scaling(cfg: RunConfig) -> ScalingConfig:
    """The Ray Train workers the mining asks for (tests/test_cluster.py fits them to cluster.yaml)."""
    return ScalingConfig(num_workers=cfg.train_workers, use_gpu=cfg.use_gpu)


def train(cfg: RunConfig, data_ref, *, remote: str | None = None, on_round=()) -> None:
    """All mining rounds in one Ray Train run (resumes after the last complete round); the driver
    prints each round's row as it is committed and hands it to the `on_round` callbacks.
    `remote`: the object-store folder the run's local copy mirrors (the workers upload each round)."""
    out = Path(cfg.out)
    trainer = TorchTrainer(
        mining_loop,
        train_loop_config=dict(run=cfg.to_dict(), run_dir=str(out.resolve()), run_remote=remote, data=data_ref),
        scaling_config=learner_scaling(cfg),
        # the workers only swap small CPU objects (predictions): gloo, also on GPU workers
        torch_config=TorchConfig(backend="gloo"),
        run_config=TrainRunConfig(
            name="mining", storage_path=join(remote, RAY_DIR) if remote else str((out / RAY_DIR).resolve()),
            # a worker that dies restarts the group, which resumes from the last complete round
            failure_config=FailureConfig(max_failures=2),
        ),
    )
    with RoundPrinter(out, remote=remote, on_round=list(on_round)):
        trainer.fit()


def run_baselines(cfg: RunConfig, data: MiningData, data_ref) -> None:
    """Baselines beside the mining, on the same features and splits:
    labeled-only (round 0 of the mining itself: the four learners before any pseudo-label) and
    single-model self-training (the first learner alone, softmax >= 0.8, seed 000)."""
    out = Path(cfg.out)
    metrics = json.loads((out / "metrics.json").read_text())
    round0 = metrics["rounds"][0]
    baselines = {"labeled-only": {"final": {k: round0.get(k) for k in ("test_waf", "test_acc", "test_uar",
                                                                       *NOISY_TEST_KEYS)}}}
    self_training = dataclasses.replace(
        cfg, out=str(out / "baselines" / "self-training"), learners=cfg.learners[:1], train_workers=0,
        mining=dataclasses.replace(cfg.mining, policy=("confidence",)), baselines=False)
    Path(self_training.out).mkdir(parents=True, exist_ok=True)
    print(f"baseline: self-training of {cfg.learners[0].name} alone at confidence "
          f"{cfg.mining.confidence_threshold}", flush=True)
    train(self_training, data_ref)
    finalize(self_training, data)
    baselines["self-training"] = json.loads((Path(self_training.out) / "metrics.json").read_text())
    metrics["baselines"] = baselines
    write_json(out / "metrics.json", metrics)


def write_predictions(out: Path, names, labels, valence) -> None:
    """predictions.csv in the MER 2024 / 2025 format (name,discrete) and
    predictions-mer2023.csv with the learners' mean valence (name,discrete,valence)."""
    table = pd.DataFrame({"name": names, "discrete": [EMOTIONS[c] for c in labels]})
    table.to_csv(out / "predictions.csv", index=False)
    table.assign(valence=np.round(np.clip(valence, -5, 5), 4)).to_csv(out / "predictions-mer2023.csv", index=False)


def finalize(cfg: RunConfig, data: MiningData) -> dict:
    """Ensemble the last round's learners → predictions.csv, final metrics, summary table."""
    out = Path(cfg.out)
    rounds = read_rounds(out)
    chosen, why = final_round(rounds, cfg.mining.adopt)   # the best adopted round, not blindly the last
    used = next(m for m in rounds if m["round"] == chosen)
    saved = np.load(round_dir(out, chosen) / "probs.npz", allow_pickle=False)
    probs = saved["probs"]
    dev_scores = [used["learners"][spec.name]["dev_waf"] for spec in cfg.learners]

    targets = np.flatnonzero(data.table.split != "train")   # pool + test: what MER asks for
    predicted = ensemble(cfg.mining.ensemble, probs[:, targets], dev_scores)
    write_predictions(out, data.table.names[targets], predicted, np.nanmean(saved["valence"][:, targets], 0))

    # that round's test scores are already in its metrics
    final = {"round": chosen, "why": why, **{k: used[k] for k in ("test_waf", "test_acc", "test_uar")}}
    final.update({k: used[k] for k in NOISY_TEST_KEYS if k in used})
    if len(data.test):
        test_pred = ensemble(cfg.mining.ensemble, probs[:, data.test], dev_scores)
        final["confusion"] = confusion(data.test_labels, test_pred).tolist()
    # the mined clips the final learners trained on (per split, averaged over the splits)
    final["mined_total"] = int(used["mined"] if cfg.mining.revisit
                               else sum(r["mined"] for r in rounds if r["round"] <= chosen))
    write_json(out / "metrics.json", {"rounds": rounds, "final": final})

    # the per-round table was printed row by row as the rounds finished (RoundPrinter)
    print(f"final ensemble: round {chosen}, {why}", flush=True)
    return final
