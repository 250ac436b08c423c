"""Experiment tracking through MLflow (the optional extra `mer-ray[mlflow]`), the tracker Ray
Train and Ray Tune users already have.

    mer-ray mine ... --mlflow                    a local ./mlruns folder
    mer-ray mine ... --mlflow /data/mlruns       that folder
    mer-ray mine ... --mlflow http://mlflow:5000 a tracking server (or sqlite:///..., databricks)

One MLflow run per mining run (experiment `mer-ray`, run name = the output folder's name):
the resolved config as parameters (nested keys dotted: `mining.rounds`, `learners.M1.streams`)
and as `config.yaml`; every round's metrics at step = round (`dev_waf`, `test_waf`, `mined`,
`pseudo_label_precision`, `M1.dev_waf` ...) as the driver sees the round finish; at the end the
final scores (`final.test_waf` ...), `metrics.json`, `report.html` with its plots and the
predictions. A resumed run (same --out) continues its MLflow run (id kept in
`<out>/mlflow.json`) and logs only the rounds it had not logged.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EXPERIMENT = "mer-ray"
STATE_FILE = "mlflow.json"
DEFAULT_FOLDER = "mlruns"


def tracking_uri(target: str | None) -> str:
    """`--mlflow` with no value → ./mlruns; a folder → its file: URI; a URI as given."""
    target = target or DEFAULT_FOLDER
    if "://" in target or target.startswith(("sqlite:", "databricks", "file:")):
        return target
    # MLflow 3 keeps the plain-folder store in maintenance mode behind this switch; it is the
    # simplest store for one person's runs and what `mlflow ui --backend-store-uri DIR` reads
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(target).expanduser().resolve().as_uri()


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested config → {dotted key: text}; learners are keyed by their name."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(data, (list, tuple)) and data and all(isinstance(v, dict) and "name" in v for v in data):
        for value in data:
            out.update(flatten({k: v for k, v in value.items() if k != "name"}, f"{prefix}{value['name']}."))
    else:
        text = ",".join(map(str, data)) if isinstance(data, (list, tuple)) else str(data)
        out[prefix.rstrip(".")] = text[:6000]   # MLflow's parameter value limit
    return out


def round_metrics(m: dict) -> dict[str, float]:
    """The numbers of one round's metrics.json worth a curve."""
    out = {k: float(v) for k, v in m.items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "round"}
    for name, learner in (m.get("learners") or {}).items():
        out.update({f"{name}.{k}": float(v) for k, v in learner.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return out


class MlflowTracker:
    def __init__(self, target: str | None, out: str | Path, *, experiment: str = EXPERIMENT):
        try:
            import mlflow
        except ImportError:
            raise ValueError("--mlflow needs MLflow: pip install 'mer-ray[mlflow]' (or mlflow)") from None
        self.mlflow = mlflow
        self.uri = tracking_uri(target)
        self.out = Path(out)
        self.experiment = experiment
        self.run_id: str | None = None
        self.logged: set[int] = set()

    def _save(self) -> None:
        (self.out / STATE_FILE).write_text(json.dumps({"uri": self.uri, "run_id": self.run_id,
                                                       "rounds": sorted(self.logged)}))

    def start(self, config: dict, config_text: str) -> None:
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(self.experiment)
        state_path = self.out / STATE_FILE
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        client = mlflow.tracking.MlflowClient(self.uri)
        if state.get("uri") == self.uri and state.get("run_id"):
            self.run_id, self.logged = state["run_id"], set(state.get("rounds", []))
            client.update_run(self.run_id, status="RUNNING")
            return
        run = client.create_run(mlflow.get_experiment_by_name(self.experiment).experiment_id,
                                run_name=self.out.name, tags={"mer_ray.out": str(self.out.resolve())})
        self.run_id = run.info.run_id
        params = flatten(config)
        items = list(params.items())
        for i in range(0, len(items), 100):   # MLflow takes at most 100 parameters per call
            client.log_batch(self.run_id, params=[mlflow.entities.Param(k, v) for k, v in items[i:i + 100]])
        client.log_text(self.run_id, config_text, "config.yaml")
        self._save()

    def log_round(self, metrics: dict) -> None:
        r = int(metrics["round"])
        if r in self.logged:
            return
        import time

        now = int(time.time() * 1000)
        values = [self.mlflow.entities.Metric(k, v, now, r) for k, v in round_metrics(metrics).items()]
        self.mlflow.tracking.MlflowClient(self.uri).log_batch(self.run_id, metrics=values)
        self.logged.add(r)
        self._save()

    def finish(self, final: dict | None, *, status: str = "FINISHED") -> None:
        client = self.mlflow.tracking.MlflowClient(self.uri)
        if final:
            import time

            now = int(time.time() * 1000)
            values = [self.mlflow.entities.Metric(f"final.{k}", float(v), now, 0) for k, v in final.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)]
            client.log_batch(self.run_id, metrics=values)
            for name in ("metrics.json", "report.html", "predictions.csv", "predictions-mer2023.csv",
                         "problems.csv"):
                if (self.out / name).exists():
                    client.log_artifact(self.run_id, str(self.out / name))
            if (self.out / "plots").is_dir():
                client.log_artifacts(self.run_id, str(self.out / "plots"), "plots")
        client.set_terminated(self.run_id, status=status)
