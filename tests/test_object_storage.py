"""`--storage s3://...` (issue 7): the feature store, the round state and Ray Train's files in an
object store, against a local S3 server (moto), with real pyarrow S3 clients in the driver, the
encoder actors and the Ray Train workers.

The credentials and the endpoint travel in the URI (`s3://key:secret@bucket/prefix?endpoint_override=...`),
so the Ray workers, started before this module, need no environment of their own.
"""
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import moto  # noqa: F401  (a dev dependency: the local S3 server below is moto's)
import pyarrow.fs as pafs

from mer_ray.config import ExtractConfig, MiningConfig, RunConfig
from mer_ray.corpus.manifest import read_corpus
from mer_ray.features.extract import extract_features
from mer_ray.features.store import FeatureStore
from mer_ray.mining.run import resolve, run_cyclic_mining
from mer_ray.storage import CACHE_ENV, Mirror, join


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 and a bucket; yields (base URI, pyarrow filesystem)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    fs, _ = pafs.FileSystem.from_uri(f"s3://testing:testing@mer-bucket?{options}&allow_bucket_creation=true")
    for _ in range(300):   # the server takes a few seconds to import on a busy machine
        try:
            fs.create_dir("mer-bucket")
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.kill()
        pytest.fail("the local S3 server did not start")
    yield f"s3://testing:testing@mer-bucket/mer-ray?{options}", fs
    server.kill()
    server.wait()


def _objects(fs, prefix: str) -> set[str]:
    infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return {i.path[len(prefix) + 1:] for i in infos if i.type == pafs.FileType.File}


def test_the_store_round_trips_through_the_bucket(s3, tmp_path):
    base, fs = s3
    uri = base.replace("/mer-ray?", "/unit-store?")
    writer = FeatureStore(uri, cache=tmp_path / "writer")
    rng = np.random.default_rng(0)
    writer.write_part("audio", ["b", "a"], rng.normal(size=(2, 4)))
    writer.write_errors("audio", [dict(name="c", stage="decode", message="c: corrupt")])
    writer.write_meta("audio", {"spec": "logmel-stats", "dim": 4})
    assert {"audio/meta.json", "audio/errors.parquet"} <= _objects(fs, "mer-bucket/unit-store")

    reader = FeatureStore(uri, cache=tmp_path / "reader")    # another node: an empty local copy
    assert reader.stored_names("audio") == set()
    assert reader.sync() == 3 and reader.sync() == 1        # only meta.json again, never the data
    for got, want in zip(reader.load("audio"), writer.load("audio")):
        np.testing.assert_array_equal(got, want)
    assert reader.errors("audio") == writer.errors("audio") and reader.meta("audio")["dim"] == 4


def test_a_bad_bucket_stops_the_run_before_any_work(s3, tmp_path):
    base, _ = s3
    cfg = resolve(RunConfig(corpus=str(tmp_path), storage=base, out="semi"))
    assert cfg.store == join(base, "features") and cfg.out == join(base, "runs", "semi")
    assert cfg.out.endswith("/mer-ray/runs/semi?" + base.split("?")[1])   # the options stay at the end
    with pytest.raises(ValueError, match="bucket exists"):
        resolve(RunConfig(corpus=str(tmp_path), storage=base.replace("mer-bucket", "no-such-bucket")))


def test_encoder_actors_upload_their_parts_and_a_fresh_node_resumes(ray_session, s3, tiny_corpus, tmp_path):
    base, fs = s3
    uri = base.replace("/mer-ray?", "/actor-store?")
    manifest = read_corpus(tiny_corpus).sort_values("name").head(24)
    cfg = ExtractConfig(streams={"audio": "logmel-stats", "video": "frame-stats"}, batch_size=8)
    first = extract_features(manifest, FeatureStore(uri, cache=tmp_path / "driver"), cfg, progress=False)
    assert first.clips == 24
    uploaded = _objects(fs, "mer-bucket/actor-store")
    assert {"audio/meta.json", "video/meta.json"} <= uploaded and any("part-" in o for o in uploaded)

    fresh = FeatureStore(uri, cache=tmp_path / "fresh")          # a new driver with nothing local
    again = extract_features(manifest, fresh, cfg, progress=False)
    assert again.clips == 0                                       # everything was found in the bucket
    for stream in ("audio", "video"):
        stored = fresh.stored_names(stream) | {e["name"] for e in fresh.errors(stream)}
        assert stored == set(manifest["name"])


def test_a_run_on_s3_storage_resumes_from_the_bucket_on_a_fresh_driver(ray_session, s3, tiny_corpus,
                                                                        tmp_path, monkeypatch):
    base, fs = s3

    def run(cache, workers):
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / cache))
        cfg = RunConfig(corpus=str(tiny_corpus), store=str(tiny_corpus / "features"), storage=base,
                        # a dev split (folds 0): a fifth of the 5 folds' models; the resume is what is checked
                        out="semi", train_workers=workers, mining=MiningConfig(rounds=1, folds=0))
        return run_cyclic_mining(cfg)

    first = run("driver-1", workers=1)
    remote = _objects(fs, "mer-bucket/mer-ray/runs/semi")
    assert {"state.json", "metrics.json", "predictions.csv", "report.html", "round-1/vote_table.parquet",
            *(f"round-{r}/M{i}.pt" for r in (0, 1) for i in range(1, 5))} <= remote
    assert any(o.startswith("ray/") for o in remote)          # Ray Train's storage_path is the bucket
    predictions = pd.read_csv(first / "predictions.csv")

    # Killed during round 1 (the bucket says only round 0 is complete); rerun on another machine.
    state = "mer-bucket/mer-ray/runs/semi/state.json"
    with fs.open_output_stream(state) as out:
        out.write(json.dumps({"complete": [0]}).encode())
    round0 = json.loads(fs.open_input_stream("mer-bucket/mer-ray/runs/semi/round-0/metrics.json").read())
    # the rerun trains in its driver (a Ray Train start-up less; the same predictions either way,
    # tests/test_end_to_end.py): what it must get from the bucket is the same
    second = run("driver-2", workers=0)
    assert second != first and not (second / "round-1.partial").exists()
    metrics = json.loads((second / "metrics.json").read_text())["rounds"]
    assert metrics[0] == round0                                # round 0 came from the bucket, not retrained
    assert json.loads(fs.open_input_stream(state).read())["complete"] == [0, 1]
    assert pd.read_csv(second / "predictions.csv").equals(predictions)


def test_mirror_pull_skips_what_it_already_has(s3, tmp_path):
    base, fs = s3
    mirror = Mirror(base.replace("/mer-ray?", "/mirror?"), tmp_path / "a")
    (mirror.local / "round-0").mkdir(parents=True)
    (mirror.local / "round-0" / "M1.pt").write_bytes(b"weights")
    (mirror.local / "state.json").write_text('{"complete": [0]}')
    assert mirror.push_tree(last=("state.json",)) == 2 and mirror.push_tree() == 1   # JSON: always
    other = Mirror(mirror.remote, tmp_path / "b")
    assert other.pull() == 2 and (other.local / "round-0" / "M1.pt").read_bytes() == b"weights"
    assert other.pull() == 1                                 # the weights are not fetched twice
    (mirror.local / "state.json").write_text('{"complete": [1]}')   # same size, new content
    assert mirror.push_tree() == 1 and other.pull() == 1
    assert (other.local / "state.json").read_text() == '{"complete": [1]}'
