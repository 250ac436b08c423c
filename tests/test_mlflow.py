"""`--mlflow`: a tiny mining run logged through MLflow, read back with mlflow.search_runs —
config as parameters, every round's metrics at step = round, the final scores and the report;
a resumed run continues its MLflow run instead of starting another or logging twice."""
import json

import pytest

from corpus_helpers import mertools_features
from mer_ray.config import ExtractConfig, MiningConfig, RunConfig
from mer_ray.features.sources import mertools_streams
from mer_ray.mining.run import run_cyclic_mining

mlflow = pytest.importorskip("mlflow")


def test_mlflow_has_the_config_every_round_and_the_report(ray_session, tiny_corpus, tmp_path):
    streams = mertools_streams(mertools_features(tiny_corpus, tmp_path / "features"))
    cfg = RunConfig(corpus=str(tiny_corpus), out=str(tmp_path / "run"), store=str(tmp_path / "store"),
                    train_workers=0, extract=ExtractConfig(streams=streams),
                    mining=MiningConfig(rounds=1, folds=0))
    target = tmp_path / "mlruns"
    out = run_cyclic_mining(cfg, mlflow=str(target))
    rounds = json.loads((out / "metrics.json").read_text())["rounds"]

    mlflow.set_tracking_uri(target.resolve().as_uri())
    runs = mlflow.search_runs(experiment_names=["mer-ray"])
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "params.mining.rounds"] == "1" and runs.loc[0, "tags.mlflow.runName"] == "run"
    assert runs.loc[0, "params.learners.M2.fusion"] == "linear"
    run_id = runs.loc[0, "run_id"]
    client = mlflow.tracking.MlflowClient()
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "test_waf"))
    assert history == [(r["round"], pytest.approx(r["test_waf"])) for r in rounds]
    assert [m.step for m in client.get_metric_history(run_id, "M1.dev_waf")] == [0, 1]
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert runs.loc[0, "metrics.final.test_waf"] == pytest.approx(final["test_waf"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "metrics.json", "report.html", "predictions.csv", "plots"} <= artifacts

    # the same command again (a resume of a finished run): the same MLflow run, nothing twice
    run_cyclic_mining(cfg, mlflow=str(target))
    assert len(mlflow.search_runs(experiment_names=["mer-ray"])) == 1
    assert len(client.get_metric_history(run_id, "test_waf")) == len(rounds)
