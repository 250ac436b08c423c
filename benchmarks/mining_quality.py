"""Does the mining beat labeled-only, on real data? Every method side by side, same splits.

For each data set (real labeled sets shipped inside installed packages, cut into three views
with MER's class imbalance and ~10 % labeled, see mer_ray/viewdata.py; and the demo corpus at
three generator seeds, extracted by the product's own path, with its own split) and each seed:

  round 0        the default's learners before any pseudo-label (labeled only)
  default        `python jobs/cyclic_mining.py`'s mining (MiningConfig defaults)
  seed004        `mining.preset: seed004`: the paper as stated (>= 3 of 4, even split, 3 rounds)
  LR             scikit-learn LogisticRegression on the standardised concatenated views, labeled clips
  LR self-train  scikit-learn SelfTrainingClassifier(LogisticRegression, threshold 0.8)
  LR cb-self-train  a class-balanced self-training loop around the same LR (per-class quotas
                 from the labeled prior, 25 % of the pool more per round, 4 rounds, re-labelled)
  LR-CV cb-self-train  the same loop around an LR whose regularisation C is chosen by 5-fold
                 cross-validated log-loss on the labeled clips (scikit-learn's
                 LogisticRegressionCV): what a competent user writes first, the strongest plain
                 alternative measured
                 Each loop also reports the LR it starts from (its own round 0), so that
                 "below round 0" is counted for the plain alternatives as for the default.
  LR confident-truth  a diagnostic: the LR plus its 75 % most confident pool clips with their
                 TRUE labels: the most that confident selection can add, however clean
  oracle         the default's learners given every pool label (the ceiling)

The mining runs the product's round loop (`mer_ray.mining.cycle.run_rounds`) in-process, two
runs at a time on the two cores: Ray Train only decides where that loop runs, and 100+ runs
would spend more time starting Ray Train workers than learning. Test clips take no part in
training, pre-training, epoch choice, round choice or policy choice; they are scored once.

    python benchmarks/mining_quality.py                       # 3 data sets x 5 split seeds
    python benchmarks/mining_quality.py --datasets digits --seeds 3 --methods default seed004
    python benchmarks/mining_quality.py --datasets digits segment mnist --labeled-share 0.3   # more labeled clips
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from record import RESULTS, commit, load_average, write_record  # noqa: E402

FIELDS = ("datasets", "seeds", "first_seed", "demo_seeds", "methods", "workers", "overrides", "train_seeds", "seconds",
          "summary", "spread", "runs", "spread_runs")
METHODS = ("default", "seed004", "lr", "lr-self-train", "lr-cb-self-train", "lr-cv-cb-self-train",
           "lr-confident-truth", "oracle")
# MiningData's row sets and audit labels (the demo's are saved as plain arrays)
ROW_SETS = ("train", "dev", "pool", "test", "test_labels", "pool_truth", "canaries", "noisy_test", "noisy_test_labels")
SKLEARN = ("lr", "lr-self-train", "lr-cb-self-train", "lr-cv-cb-self-train", "lr-confident-truth")
# LogisticRegressionCV's grid for lr-cv-cb-self-train: 1e-3 .. 1e2
CV_CS = tuple(np.logspace(-3, 2, 11))


def _concat(data, rows):
    return np.concatenate([data.table.streams[v][rows] for v in sorted(data.table.streams)], axis=1)


def _lr(C: float = 1.0):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=C, max_iter=2000)


def _cv_c(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """The L2 strength a competent user would pick: 5-fold cross-validated log-loss on the
    labeled clips alone (LogisticRegressionCV, stratified folds)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    folds = StratifiedKFold(min(5, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    search = LogisticRegressionCV(Cs=list(CV_CS), cv=folds, scoring="neg_log_loss", max_iter=2000,
                                  l1_ratios=(0.0,), use_legacy_attributes=False)   # plain L2, scikit-learn 1.10's form
    return float(search.fit(x, y).C_)


def run_sklearn(method: str, data, truth, seed: int) -> dict:
    """Test WAF of a plain scikit-learn method; a self-training loop also reports the LR it
    starts from (`round0_waf`) and, when it has rounds of its own, each round's test WAF: whether
    it ends below its own start is measured as it is for the default."""
    from sklearn.semi_supervised import SelfTrainingClassifier
    from mer_ray.metrics import waf

    x_lab, y_lab = _concat(data, data.train), truth[data.train]
    x_pool, x_test = _concat(data, data.pool), _concat(data, data.test)
    score = lambda model: round(waf(data.test_labels, model.predict(x_test)), 4)
    if method == "lr":
        return dict(test_waf=score(_lr().fit(x_lab, y_lab)))
    if method == "lr-self-train":
        x = np.concatenate([x_lab, x_pool])
        y = np.concatenate([y_lab, np.full(len(x_pool), -1)])
        model, start = SelfTrainingClassifier(_lr(), threshold=0.8).fit(x, y), _lr().fit(x_lab, y_lab)
        return dict(test_waf=score(model), round0_waf=score(start),
                    **_change(start.predict(x_test), model.predict(x_test), data.test_labels))
    if method in ("lr-cb-self-train", "lr-cv-cb-self-train"):
        strength = _cv_c(x_lab, y_lab, seed) if method == "lr-cv-cb-self-train" else 1.0
        prior = np.bincount(y_lab, minlength=6) / len(y_lab)
        model = start = _lr(strength).fit(x_lab, y_lab)
        rounds = [dict(round=0, test_waf=score(model))]
        for r in range(1, 5):
            probs = model.predict_proba(x_pool)
            pred, conf = model.classes_[probs.argmax(1)], probs.max(1)
            take = []
            for c in range(6):
                members = np.flatnonzero(pred == c)
                quota = int(prior[c] * min(1.0, 0.25 * r) * len(x_pool))
                take.extend(members[np.argsort(-conf[members], kind="stable")[:quota]])
            take = np.array(sorted(take), np.int64)
            model = _lr(strength).fit(np.concatenate([x_lab, x_pool[take]]), np.concatenate([y_lab, pred[take]]))
            rounds.append(dict(round=r, test_waf=score(model)))
        return dict(test_waf=rounds[-1]["test_waf"], round0_waf=rounds[0]["test_waf"], rounds=rounds,
                    **_change(start.predict(x_test), model.predict(x_test), data.test_labels))
    if method == "lr-confident-truth":
        # a diagnostic, not a method: the LR's 75 % most confident pool clips with their TRUE
        # labels. What confident selection can add at best, however clean its pseudo-labels.
        probs = _lr().fit(x_lab, y_lab).predict_proba(x_pool)
        take = np.argsort(-probs.max(1), kind="stable")[:int(0.75 * len(x_pool))]
        y_pool = truth[data.pool]
        return dict(test_waf=score(_lr().fit(np.concatenate([x_lab, x_pool[take]]),
                                             np.concatenate([y_lab, y_pool[take]]))))
    raise ValueError(method)


def run_mining(method: str, data, truth, seed: int, overrides: dict) -> dict:
    import torch
    from mer_ray.config import RunConfig, apply_preset, config_from_dict
    from mer_ray.mining.cycle import final_round, run_rounds
    from mer_ray.splits import holdout

    torch.set_num_threads(1)
    overrides = dict(overrides)
    roster = overrides.pop("learners", None)   # --learners: another roster, recorded with the overrides
    cfg = RunConfig(seed=seed) if roster is None else dataclasses.replace(
        RunConfig(seed=seed), learners=config_from_dict({"learners": roster}).learners)
    mining = cfg.mining
    if method == "seed004":
        mining = apply_preset(mining, "seed004")
    if method == "oracle":   # every pool label known: the learners' ceiling
        label = data.table.label.copy()
        label[data.pool] = truth[data.pool]
        table = dataclasses.replace(data.table, label=label)
        data = dataclasses.replace(data, table=table, train=np.union1d(data.train, data.pool),
                                   pool=np.zeros(0, np.int64))
        mining = dataclasses.replace(mining, rounds=0)
    if method != "oracle" and overrides:
        mining = dataclasses.replace(mining, **overrides)
    if mining.folds < 2:
        train, dev = holdout(data.table.label, data.train, mining.dev_fraction, seed)
        data = dataclasses.replace(data, train=train, dev=dev)
    cfg = dataclasses.replace(cfg, mining=mining, train_workers=0)
    with tempfile.TemporaryDirectory() as run_dir:
        history = run_rounds(cfg, data, Path(run_dir), echo=False)
        chosen, why = final_round(history, mining)
        change = _test_change(Path(run_dir), history, chosen, data, cfg)
    final = next(m for m in history if m["round"] == chosen)
    # the same run under the rule without the margin (the best held-out round), side by side
    unguarded, _ = final_round(history, dataclasses.replace(mining, final_margin=0.0))
    return dict(test_waf=final["test_waf"], round0_waf=history[0]["test_waf"], final_round=chosen, **change,
                best_round=unguarded, best_round_waf=next(m for m in history if m["round"] == unguarded)["test_waf"],
                rounds=[dict(round=m["round"], test_waf=m["test_waf"], held_out_waf=m["dev_waf"],
                             adopted=m.get("adopted", True), vs_round0=m.get("vs_round0"), mined=m["mined"],
                             precision=m["pseudo_label_precision"], mined_per_class=m["mined_per_class"],
                             learners_test_waf={n: v.get("test_waf") for n, v in m["learners"].items()})
                        for m in history])


def _test_change(run_dir: Path, history: list[dict], chosen: int, data, cfg) -> dict:
    """`_change` from round 0 to the final round, from the rounds' saved probabilities. A final
    round a clip or two below round 0 may be the luck of which clips are in the test set, not
    harm: this says how large that luck is. Empty if the prediction cannot be rebuilt exactly."""
    from mer_ray.metrics import waf
    from mer_ray.mining.outputs import round_prediction

    if chosen == 0:
        return dict(test_fixed=0, test_broken=0, test_noise=0.0)
    preds = []
    for m in (history[0], next(m for m in history if m["round"] == chosen)):
        pred = round_prediction(run_dir, m, cfg, data.test)
        if abs(waf(data.test_labels, pred) - m["test_waf"]) > 1e-4:   # not the round's own prediction: no claim
            return {}
        preds.append(pred)
    return _change(preds[0], preds[1], data.test_labels)


def _change(before: np.ndarray, after: np.ndarray, labels: np.ndarray) -> dict:
    """Test clips a method's end fixed and broke against its start, and the paired-bootstrap sd of
    its WAF difference (1,000 resamples of the test clips): the product's own accounting."""
    from mer_ray.metrics import paired_change

    change = paired_change(before, after, labels, seed=0, resamples=1000)
    return dict(test_fixed=change["fixed"], test_broken=change["broken"], test_noise=change["noise"])


def prepare_demo(seeds: range, folder: Path) -> None:
    """The demo corpus (`python jobs/cyclic_mining.py` with no --corpus) at generator seeds
    `seeds`: rendered and extracted once by the product's own path (cached under .cache/),
    its own labeled / unlabeled / test split; the MiningData saved for the pool's processes."""
    import ray
    from mer_ray.config import RunConfig
    from mer_ray.mining.run import init_ray, prepare_data, resolve

    init_ray()
    try:
        for g in seeds:
            cfg = resolve(RunConfig(seed=g, out=str(folder / f"demo-run-{g}")))
            data, _ = prepare_data(cfg)
            truth = np.where(data.table.label >= 0, data.table.label, data.pool_truth)
            truth[data.test] = data.test_labels
            save_data(data, truth, folder / f"demo-{g}.npz")
    finally:
        ray.shutdown()


def save_data(data, truth: np.ndarray, path: Path) -> None:
    t = data.table
    np.savez(path, truth=truth, names=t.names.astype(str), split=t.split.astype(str), label=t.label,
             valence=t.valence, **{f"stream:{k}": v for k, v in t.streams.items()},
             **{f"present:{k}": v for k, v in t.present.items()}, **{k: getattr(data, k) for k in ROW_SETS})


def load_data(dataset: str, split_seed: int, folder: Path | None, labeled_share: float = 0.1):
    """(MiningData, truth [N]): a real data set cut by `split_seed` with `labeled_share` of its
    non-test clips labeled, or the demo corpus made with generator seed `split_seed` (its own split)."""
    if dataset == "demo":   # plain arrays, no pickle: what prepare_demo saved
        from mer_ray.features.table import FeatureTable
        from mer_ray.mining.cycle import MiningData
        z = np.load(folder / f"demo-{split_seed}.npz")
        table = FeatureTable(names=z["names"].astype(object), split=z["split"].astype(object), label=z["label"],
                             valence=z["valence"],
                             streams={k[7:]: z[k] for k in z.files if k.startswith("stream:")},
                             present={k[8:]: z[k] for k in z.files if k.startswith("present:")})
        return MiningData(table=table, **{k: z[k] for k in ROW_SETS}), z["truth"]
    from mer_ray.viewdata import load_viewset, mining_data
    return mining_data(load_viewset(dataset, seed=split_seed), split_seed, labeled_share=labeled_share)


def run_one(job: tuple) -> dict:
    dataset, split_seed, method, overrides, folder, train_seed, labeled_share = job

    started = time.perf_counter()
    data, truth = load_data(dataset, split_seed, folder, labeled_share)
    if method in SKLEARN:
        out = run_sklearn(method, data, truth, split_seed)
    else:
        out = run_mining(method, data, truth, split_seed if train_seed is None else train_seed, overrides)
    return dict(dataset=dataset, seed=split_seed, train_seed=split_seed if train_seed is None else train_seed,
                method=method, seconds=round(time.perf_counter() - started, 1), labeled_share=labeled_share,
                labeled=int(len(data.train)), pool=int(len(data.pool)), test=int(len(data.test)), **out)


def summarise(runs: list[dict]) -> dict:
    table = {}
    for r in runs:
        table.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(r)
    summary = {}
    for dataset, methods in table.items():
        summary[dataset] = {}
        for method, rs in methods.items():
            scores = np.array([r["test_waf"] for r in rs])
            entry = dict(test_waf_mean=round(float(scores.mean()), 4), test_waf_sd=round(float(scores.std(ddof=1)) if len(rs) > 1 else 0.0, 4), n=len(rs))
            if "round0_waf" in rs[0]:
                r0 = np.array([r["round0_waf"] for r in rs])
                entry.update(round0_mean=round(float(r0.mean()), 4),
                             gain_mean=round(float((scores - r0).mean()), 4),
                             worse_than_round0=int((scores < r0 - 1e-9).sum()))
                if all("test_noise" in r for r in rs):   # below by more than 2 sds of the test clips' own luck
                    entry["worse_beyond_test_noise"] = int(sum(r["test_waf"] - r["round0_waf"] < -2 * r["test_noise"] - 1e-9
                                                               for r in rs))
                # each learner alone at round 0 (M1 is MERTools' attention-fusion recipe)
                names = (rs[0].get("rounds") or [{}])[0].get("learners_test_waf") or {}
                entry["round0_learners"] = {n: round(float(np.mean([r["rounds"][0]["learners_test_waf"][n] for r in rs])), 4)
                                            for n in names}
            summary[dataset][method] = entry
        d = summary[dataset]
        if "default" in d and "oracle" in d:
            gap = d["oracle"]["test_waf_mean"] - d["default"]["round0_mean"]
            d["default"]["gap_closed"] = round((d["default"]["test_waf_mean"] - d["default"]["round0_mean"]) / gap, 3) if gap > 0 else None
    return summary


def train_seed_spread(runs: list[dict], split_seed: int) -> dict:
    """Per data set: sd of the default's final and round-0 test WAF over training seeds on one
    split seed (the split's own seed and the extra ones): what retraining alone moves."""
    spread = {}
    for dataset in sorted({r["dataset"] for r in runs}):
        rs = [r for r in runs if r["dataset"] == dataset and r["method"] == "default" and r["seed"] == split_seed]
        if len(rs) > 1:
            spread[dataset] = dict(n=len(rs), final_sd=round(float(np.std([r["test_waf"] for r in rs], ddof=1)), 4),
                                   round0_sd=round(float(np.std([r["round0_waf"] for r in rs], ddof=1)), 4))
    return spread


def print_table(summary: dict) -> None:
    methods = [m for m in ("round 0", *METHODS)]
    print(f"{'data set':<10} " + " ".join(f"{m:>17}" for m in methods))
    for dataset, d in summary.items():
        cells = []
        for m in methods:
            if m == "round 0":
                e = d.get("default")
                cells.append(f"{e['round0_mean']:.3f}" + " " * 9 if e else "-")
            elif m in d:
                cells.append(f"{d[m]['test_waf_mean']:.3f} ± {d[m]['test_waf_sd']:.3f}")
            else:
                cells.append("-")
        print(f"{dataset:<10} " + " ".join(f"{c:>17}" for c in cells))
    for dataset, d in summary.items():
        for method, e in d.items():   # the default, seed004 and the plain loops, each against its own start
            if "round0_mean" in e and method != "oracle":
                print(f"{dataset}: {method} gain over its round 0 {e['gain_mean']:+.4f}, below its round 0 on "
                      f"{e['worse_than_round0']}/{e['n']} seeds"
                      + (f" ({e['worse_beyond_test_noise']} by more than 2 sds of the test clips' noise)"
                         if "worse_beyond_test_noise" in e else "")
                      + (f", gap to oracle closed {e['gap_closed']}" if "gap_closed" in e else ""))


def plot(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = list(summary)
    methods = ["round 0", *[m for m in METHODS if any(m in summary[d] for d in datasets)]]
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(datasets) * len(methods) / 4, 3.6))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        means, sds = [], []
        for d in datasets:
            e = summary[d].get("default" if m == "round 0" else m)
            means.append(np.nan if not e else (e["round0_mean"] if m == "round 0" else e["test_waf_mean"]))
            sds.append(0 if not e or m == "round 0" else e["test_waf_sd"])
        ax.bar(np.arange(len(datasets)) + j * width, means, width, yerr=sds, label=m, capsize=2)
    ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
    ax.set_ylabel("test WAF (mean ± sd over split seeds)")
    ax.set_ylim(0.3, 1.0)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "segment", "mnist", "demo"],
                        choices=["digits", "segment", "mnist", "demo"])
    parser.add_argument("--seeds", type=int, default=5, help="split seeds per real data set")
    parser.add_argument("--demo-seeds", type=int, default=3, help="generator seeds of the demo corpus")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first split seed (and demo generator seed): --first-seed 10 --seeds 5 runs "
                             "seeds 10-14, splits that took no part in choices made on seeds 0-4")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="MiningConfig overrides for default/seed004 (YAML values), to compare settings")
    parser.add_argument("--learners", metavar="YAML",
                        help="a file with a `learners:` list: the roster of the default / seed004 / oracle runs "
                             "(recorded in `overrides`), to compare rosters")
    parser.add_argument("--train-seeds", type=int, default=2,
                        help="extra training seeds of the default on the first split seed (spread over training seeds)")
    parser.add_argument("--labeled-share", type=float, default=0.1,
                        help="share of each real data set's non-test clips that are labeled (the issue's ~10 %%; "
                             "the demo keeps its own split): how the mining fares with more labeled clips")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "mining_quality.json"))
    args = parser.parse_args(argv)
    if "demo" in args.datasets and args.labeled_share != parser.get_default("labeled_share"):
        parser.error("--labeled-share cuts the real data sets; the demo corpus has its own split: "
                     "leave demo out of --datasets")
    import yaml
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.learners:
        from mer_ray.config import MiningConfig, RunConfig, load_learners
        from mer_ray.mining.resolve import resolve_learners
        roster = load_learners(args.learners)
        # what the runs would refuse (a learner it cannot train, a vote it cannot reach), refused here
        resolve_learners(RunConfig(learners=roster, mining=dataclasses.replace(MiningConfig(), **overrides)))
        overrides["learners"] = json.loads(json.dumps([dataclasses.asdict(s) for s in roster]))
    first = args.first_seed
    started, load_start = time.perf_counter(), load_average()
    scratch = Path(tempfile.mkdtemp(prefix="mining-quality-"))
    # the split seeds of a data set (the demo's: its generator seeds), decided in this one place
    seeds_of = lambda d: range(first, first + (min(args.seeds, args.demo_seeds) if d == "demo" else args.seeds))
    if "demo" in args.datasets:
        prepare_demo(seeds_of("demo"), scratch)
    share = args.labeled_share
    jobs = [(d, s, m, overrides, scratch, None, share) for d in args.datasets for s in seeds_of(d) for m in args.methods]
    # the spread over training seeds alone: the first split seed, the default, seeds 1000, 1001, ...
    jobs += [(d, first, "default", overrides, scratch, 1000 + t, share) for d in args.datasets for t in range(args.train_seeds)]
    # slow jobs first so the two workers finish together
    jobs.sort(key=lambda j: j[2] not in ("default", "seed004"))
    # every finished run is appended to <out>.runs.jsonl as it ends: a killed benchmark reruns
    # with the same arguments and only does the runs that are missing
    journal = Path(args.out).with_suffix(".runs.jsonl")
    done, head = {}, commit()[0]
    if journal.exists():
        for line in journal.read_text().splitlines():
            r = json.loads(line)
            if r.get("commit") != head:   # made by other code: run again
                continue
            done[(r["dataset"], r["seed"], r["method"], r["train_seed"], json.dumps(r.get("overrides", {}), sort_keys=True),
                  r.get("labeled_share", 0.1))] = r
    key = lambda j: (j[0], j[1], j[2], j[1] if j[5] is None else j[5], json.dumps(j[3], sort_keys=True), j[6])
    results = [done[key(j)] for j in jobs if key(j) in done]
    todo = [j for j in jobs if key(j) not in done]
    if results:
        print(f"{len(results)} runs already in {journal}; {len(todo)} to go", flush=True)
    # spawn: the demo's preparation ran a Ray driver in this process
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool, \
            journal.open("a") as log:
        for result in pool.map(run_one, todo):
            result.update(overrides=overrides, commit=head)
            log.write(json.dumps(result) + "\n")
            log.flush()
            results.append(result)
            start = ""   # where a loop began, and for the product's loop the round it kept
            if "round0_waf" in result:
                kept = f", final round {result['final_round']}" if "final_round" in result else ""
                start = f" (round 0 {result['round0_waf']:.4f}{kept})"
            print(f"  {result['dataset']:<8} seed {result['seed']} {result['method']:<17} test WAF "
                  f"{result['test_waf']:.4f}{start}  {result['seconds']}s", flush=True)
    runs = [r for r in results if r["train_seed"] < 1000]
    spread_runs = [r for r in results if r["train_seed"] >= 1000]
    summary = summarise(runs)
    spread = train_seed_spread(runs + spread_runs, first)
    print_table(summary)
    for dataset, e in spread.items():
        print(f"{dataset}: over {e['n']} training seeds (split seed {first}) final test WAF sd {e['final_sd']:.4f}, "
              f"round 0 sd {e['round0_sd']:.4f}")
    out = Path(args.out)
    shutil.rmtree(scratch, ignore_errors=True)
    write_record(out, dict(datasets=args.datasets, seeds=args.seeds, first_seed=first, demo_seeds=args.demo_seeds, methods=args.methods, workers=args.workers,
                           overrides=overrides, train_seeds=args.train_seeds,
                           seconds=round(time.perf_counter() - started, 1),
                           summary=summary, spread=spread, runs=runs, spread_runs=spread_runs),
                 script=__file__, fields=FIELDS, argv=argv, load_start=load_start)
    plot(summary, out.with_suffix(".png"))
    journal.unlink()
    print(f"wrote {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
