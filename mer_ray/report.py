"""The round report: PNG plots + one HTML page, built only from a run folder's files.

    write_report(run_dir)  →  run_dir/report.html, run_dir/plots/*.png

Reads metrics.json (rounds, final, baselines) and round-*/vote_table.parquet, so a report can
be rebuilt for any finished or half-finished run.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mer_ray.labels import EMOTIONS  # noqa: E402
from mer_ray.metrics import describe_change  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_scores(rounds: list[dict], baselines: dict, path: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    r = [m["round"] for m in rounds]
    for i, name in enumerate(rounds[0]["learners"]):
        axes[0].plot(r, [m["learners"][name]["dev_waf"] for m in rounds], "o-", color=COLORS[i], label=name)
    axes[0].plot(r, [m["dev_waf"] for m in rounds], "s-k", lw=2.5, label="ensemble")
    axes[0].set_title("dev WAF per round")
    if rounds[0].get("test_waf") is not None:
        axes[1].plot(r, [m["test_waf"] for m in rounds], "s-k", lw=2.5, label="mining ensemble")
        if rounds[0].get("noisy_test_waf") is not None:
            axes[1].plot(r, [m.get("noisy_test_waf") for m in rounds], "s:", color="0.45", lw=2,
                         label="mining ensemble, noisy test")
        for j, (name, base) in enumerate(baselines.items()):
            b_rounds = base.get("rounds") or []
            if b_rounds and b_rounds[0].get("test_waf") is not None:
                axes[1].plot([m["round"] for m in b_rounds], [m["test_waf"] for m in b_rounds], "^--",
                             color=COLORS[(j + 5) % 10], label=name)
        axes[1].set_title("held-out test WAF per round")
    else:
        axes[1].text(0.5, 0.5, "no held-out test labels", ha="center", va="center")
    for ax in axes:
        ax.set_xlabel("round")
        ax.set_xticks(r)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("weighted F1")
    return _save(fig, path)


def plot_mined(rounds: list[dict], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    r = np.array([m["round"] for m in rounds])
    bottom = np.zeros(len(rounds))
    for c, emotion in enumerate(EMOTIONS):
        counts = np.array([m.get("mined_per_class", {}).get(emotion, 0) for m in rounds])
        ax.bar(r, counts, bottom=bottom, color=COLORS[c], label=emotion)
        bottom += counts
    ax.set(xlabel="round", ylabel="clips mined", title="mined clips per class", xticks=r)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_precision(rounds: list[dict], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    mined = [m for m in rounds if m["round"] > 0]
    for key, style, label in (("pseudo_label_precision", "o-", "all mined clips (known truth)"),
                              ("canary_precision", "s--", "canaries (hidden labeled clips)")):
        points = [(m["round"], m[key]) for m in mined if m.get(key) is not None]
        if points:
            ax.plot(*zip(*points), style, label=label)
    accs = [np.mean([v["dev_acc"] for v in m["learners"].values()]) for m in rounds]
    ax.plot([m["round"] for m in rounds], accs, ":k", label="learners' mean dev accuracy")
    ax.set(xlabel="round", ylabel="precision", title="pseudo-label precision", ylim=(0, 1.02),
           xticks=[m["round"] for m in rounds])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion(matrix: list[list[int]], path: Path) -> str:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(m)):
        for j in range(len(m)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set(xlabel="predicted", ylabel="true", title="final ensemble, held-out test")
    return _save(fig, path)


def plot_confidence(run_dir: Path, rounds: list[dict], path: Path) -> str | None:
    tables = [(m["round"], run_dir / f"round-{m['round']}" / "vote_table.parquet") for m in rounds]
    tables = [(r, p) for r, p in tables if p.exists()]
    if not tables:
        return None
    fig, axes = plt.subplots(1, len(tables), figsize=(3.6 * len(tables), 3.4), sharey=True, squeeze=False)
    for ax, (r, table_path) in zip(axes[0], tables):
        votes = pd.read_parquet(table_path, columns=["confidence", "selected"])
        bins = np.linspace(0, 1, 21)
        ax.hist(votes.loc[~votes["selected"], "confidence"], bins=bins, alpha=0.6, label="not selected")
        ax.hist(votes.loc[votes["selected"], "confidence"], bins=bins, alpha=0.6, label="mined")
        ax.set(title=f"vote feeding round {r}", xlabel="agreeing learners' confidence")
    axes[0][0].set_ylabel("pool clips")
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def _table(rounds: list[dict]) -> str:
    learners = list(rounds[0]["learners"])
    head = ["round", "train size", "mined", "precision", *[f"{n} dev WAF" for n in learners], "dev WAF", "test WAF"]
    noisy = any(m.get("noisy_test_waf") is not None for m in rounds)

    def cell(x):
        return "–" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))
    rows = [[m["round"], m["train_size"], m["mined"], m.get("pseudo_label_precision"),
             *[m["learners"][n]["dev_waf"] for n in learners], m.get("dev_waf"), m.get("test_waf")]
            + ([m.get("noisy_test_waf")] if noisy else []) for m in rounds]
    head += ["noisy test WAF"] if noisy else []
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(x)}</td>" for x in row) + "</tr>" for row in rows)
            + "</table>")


def _noisy_rows(summary: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """MER-NOISE (seed 003): the same methods scored on the corrupted copies of the test clips,
    one row each below the clean ones, so clean and noisy read side by side."""
    return [(f"{name} — noisy test", {k: f.get(f"noisy_{k}") for k in ("test_waf", "test_acc", "test_uar")})
            for name, f in summary if f.get("noisy_test_waf") is not None]


def _change_note(final: dict) -> str:
    """The final round against round 0 on the test clips, with the noise of which clips those are."""
    change = final.get("vs_round0_test")
    if not change or not final.get("round"):
        return ""
    return (f"<p>The final ensemble (round {final['round']}) against round 0 on the test clips: "
            f"{html.escape(describe_change(change))}. A change within about 2 sds is the luck of which clips "
            f"are in the test set.</p>")


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rounds, final, baselines = metrics["rounds"], metrics.get("final", {}), metrics.get("baselines", {})
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    images = [
        ("Scores per round", plot_scores(rounds, baselines, plots / "scores.png")),
        ("Mined clips per class", plot_mined(rounds, plots / "mined_per_class.png")),
        ("Pseudo-label precision", plot_precision(rounds, plots / "precision.png")),
    ]
    if final.get("confusion"):
        images.append(("Confusion matrix", plot_confusion(final["confusion"], plots / "confusion.png")))
    hist = plot_confidence(run_dir, rounds, plots / "confidence.png")
    if hist:
        images.append(("Vote confidence", hist))

    summary = [("mining (final ensemble)", final)]
    summary += [(name, base.get("final", {})) for name, base in baselines.items()]
    summary += _noisy_rows(summary)
    summary_rows = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(
            f"<td>{'–' if f.get(k) is None else f'{f[k]:.4f}'}</td>" for k in ("test_waf", "test_acc", "test_uar"))
        + "</tr>" for name, f in summary)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mer-ray run {html.escape(run_dir.name)}</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }}
 table {{ border-collapse: collapse; margin: 1em 0; }}
 td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
 th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
 img {{ max-width: 100%; border: 1px solid #eee; margin: .5em 0 1.5em; }}
</style></head><body>
<h1>mer-ray cyclic pseudo-label mining — {html.escape(run_dir.name)}</h1>
<h2>Held-out test</h2>
<table><tr><th>method</th><th>WAF</th><th>ACC</th><th>UAR</th></tr>{summary_rows}</table>
{_change_note(final)}
<h2>Rounds</h2>
{_table(rounds)}
{''.join(f'<h2>{html.escape(title)}</h2><img src="plots/{name}" alt="{html.escape(title)}">' for title, name in images)}
</body></html>
"""
    out = run_dir / "report.html"
    out.write_text(page)
    return out
