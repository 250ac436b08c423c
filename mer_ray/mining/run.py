"""The whole run: corpus → manifest → features (Ray Data) → mining rounds (Ray Train) → outputs.

`run_cyclic_mining(RunConfig())` is what `python jobs/cyclic_mining.py` does with no arguments.
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

from mer_ray.config import RunConfig
from mer_ray.corpus.manifest import read_corpus, write_manifest
from mer_ray.corpus.noise import Corruption, NoiseBank
from mer_ray.corpus.truth import read_truth
from mer_ray.features.extract import extract_features
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import NOISY_VIEW, load_feature_table, save_norm, with_noisy_view
from mer_ray.labels import EMOTIONS
from mer_ray.metrics import confusion
from mer_ray.mining.cycle import NOISY_TEST_KEYS, MiningData, format_round, mining_loop, stratified_split
from mer_ray.mining.ensemble import ensemble
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
    Ray with its dashboard on 127.0.0.1 only."""
    if not ray.is_initialized():
        ray.init(dashboard_host="127.0.0.1", log_to_driver=True)


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
    return dataclasses.replace(cfg, corpus=str(corpus), truth=truth, out=out, store=store)


def check_storage(storage: str | None) -> str | None:
    """The shared location: a folder (made absolute) or an object-store URI, checked now so that a
    typo or missing credentials stop the job before any work, not after the extraction."""
    if not storage:
        return None
    if is_remote(storage):
        Mirror.of(storage).check()
        return storage
    return str(Path(storage).resolve())


def prepare_data(cfg: RunConfig) -> tuple[MiningData, pd.DataFrame]:
    """Manifest, feature extraction (only what is missing), the aligned table and the splits."""
    manifest = read_corpus(cfg.corpus)
    write_manifest(manifest, Path(cfg.out) / "manifest.parquet")
    counts = manifest["split"].value_counts().to_dict()
    print(f"corpus {cfg.corpus}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)

    store = FeatureStore(cfg.store)
    summary = extract_features(manifest, store, cfg.extract)
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
    train, dev = stratified_split(table.label, labeled, cfg.mining.dev_fraction, cfg.seed)
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


def run_cyclic_mining(cfg: RunConfig) -> Path:
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
    print("mer-ray cyclic mining, config:\n" + cfg.dumps(), flush=True)
    (out / "config.yaml").write_text(cfg.dumps())
    init_ray()
    if not cfg.storage and len([n for n in ray.nodes() if n["Alive"]]) > 1:
        print("warning: a multi-node cluster without --storage: workers on other nodes write the "
              "feature store and round state to their own disks; pass --storage <shared folder>", flush=True)

    data, _ = prepare_data(cfg)
    data_ref = ray.put(data)   # once: every worker, round and baseline reads the same arrays
    # The driver keeps names, splits and labels only: the feature matrices now live in the
    # object store, and a second copy here would double the run's peak memory at MER scale.
    data = dataclasses.replace(data, table=dataclasses.replace(data.table, streams={}))
    train(cfg, data_ref, remote=remote if mirror else None)
    if mirror:
        mirror.pull(skip=(RAY_DIR + "/",))   # the checkpoints of learners trained on other nodes
    final = finalize(cfg, data)
    if cfg.baselines:
        run_baselines(cfg, data, data_ref)
    report = write_report(out)
    print(f"final: test WAF {final['test_waf']}  ACC {final['test_acc']}  UAR {final['test_uar']}; "
          f"mined {final['mined_total']} clips")
    if final.get("noisy_test_waf") is not None:
        print(f"noisy test (MER-NOISE): WAF {final['noisy_test_waf']}  ACC {final['noisy_test_acc']}  "
              f"UAR {final['noisy_test_uar']}")
    if mirror:
        mirror.push_tree(last=("state.json",))
        print(f"uploaded to {remote}", flush=True)
    print(f"outputs in {out}: predictions.csv, metrics.json, {report.name}, round-*/ "
          f"(vote tables, checkpoints)")
    return out


def learner_scaling(cfg: RunConfig) -> ScalingConfig:
    """The Ray Train workers the mining asks for (tests/test_cluster.py fits them to cluster.yaml)."""
    return ScalingConfig(num_workers=cfg.train_workers, use_gpu=cfg.use_gpu)


def train(cfg: RunConfig, data_ref, *, remote: str | None = None) -> None:
    """All mining rounds in one Ray Train run (resumes after the last complete round).
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
    saved = np.load(round_dir(out, rounds[-1]["round"]) / "probs.npz", allow_pickle=False)
    probs = saved["probs"]
    dev_scores = [rounds[-1]["learners"][spec.name]["dev_waf"] for spec in cfg.learners]

    targets = np.flatnonzero(data.table.split != "train")   # pool + test: what MER asks for
    predicted = ensemble(cfg.mining.ensemble, probs[:, targets], dev_scores)
    write_predictions(out, data.table.names[targets], predicted, np.nanmean(saved["valence"][:, targets], 0))

    # the final ensemble is the last round's: its test scores are already in that round's metrics
    final = {k: rounds[-1][k] for k in ("test_waf", "test_acc", "test_uar")}
    final.update({k: rounds[-1][k] for k in NOISY_TEST_KEYS if k in rounds[-1]})
    if len(data.test):
        test_pred = ensemble(cfg.mining.ensemble, probs[:, data.test], dev_scores)
        final["confusion"] = confusion(data.test_labels, test_pred).tolist()
    final["mined_total"] = int(sum(r["mined"] for r in rounds))
    write_json(out / "metrics.json", {"rounds": rounds, "final": final})

    print(f"\nper-round summary ({out})")
    for i, r in enumerate(rounds):
        print(format_round(r, header=(i == 0)))
    return final
