"""Ray Data extraction on messy clips: quarantine, missing modalities, resume = clean run, npy round trip."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_ray.cli import features as features_cli
from mer_ray.config import ExtractConfig
from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus
from mer_ray.corpus.manifest import read_corpus
from mer_ray.corpus.media import write_clip
from mer_ray.features.extract import extract_features, plan
from mer_ray.features.npy import export_npy, import_npy
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import load_feature_table


@pytest.fixture(scope="module")
def audio_model(tmp_path_factory):
    """A tiny random WavLM (layer-norm feature extractor: batched with an attention mask)."""
    import torch
    import transformers

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("wavlm") / "tiny-wavlm"
    config = transformers.WavLMConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4),
                                      conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=2, num_buckets=8, feat_extract_norm="layer")
    transformers.WavLMModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """16 demo clips plus the ways real MER clips go wrong: corrupt, no video, no audio, no text."""
    root = make_demo_corpus(tmp_path_factory.mktemp("messy") / "corpus",
                            DemoCorpusConfig(n_labeled=10, n_unlabeled=6, n_test=0, seed=7), workers=1)
    extra = root / "extra"
    extra.mkdir()
    (extra / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 50)
    tone = (0.2 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    write_clip(extra / "samplenew3_novideo.mp4", None, tone)
    write_clip(extra / "silent.mp4", np.full((8, 32, 32, 3), 90, np.uint8), None)
    manifest = read_corpus(root)
    rows = pd.DataFrame([
        dict(name="corrupt", video=str(extra / "corrupt.mp4"), transcript="what a day"),
        dict(name="samplenew3_novideo", video=str(extra / "samplenew3_novideo.mp4"), transcript="hello"),
        dict(name="silent", video=str(extra / "silent.mp4"), transcript=None),
    ]).assign(audio=None, split="unlabeled", label=None, valence=np.nan)
    manifest = pd.concat([manifest, rows[manifest.columns]], ignore_index=True)
    return manifest


def _store_content(store: FeatureStore, stream: str):
    names, features = store.load(stream)
    return list(names), features


def _config(audio_model, batch_size=4):
    # one encoder actor: 19 clips are 5 batches, and a second actor only doubles the start-up
    # (imports, model) on 2 cores; the pool of two writing one store: the tiny corpus's extraction
    return ExtractConfig(streams={"audio": f"hf-audio:{audio_model}?chunk_seconds=1",
                                  "video": "frame-stats", "text": "text-bow"},
                         batch_size=batch_size, frame_size=32, encoder_actors=1)


def test_bad_clips_are_quarantined_missing_modalities_recorded_and_resume_equals_a_clean_run(
        ray_session, messy, audio_model, tmp_path):
    cfg = _config(audio_model)
    clean = FeatureStore(tmp_path / "clean")
    summary = extract_features(messy, clean, cfg, progress=False)
    assert summary.clips == len(messy) == 19
    assert "corrupt" in summary.line() or "not a readable" in summary.line()

    # Quarantine: the corrupt file is an error (with its reason) for both media streams only.
    for stream in ("audio", "video"):
        errors = {e["name"]: e for e in clean.errors(stream)}
        assert errors["corrupt"]["stage"] == "decode" and "corrupt.mp4" in errors["corrupt"]["message"]
    # Missing modality: recorded as "missing", not an error, and the clip's other streams are stored.
    video_errors = {e["name"]: e["stage"] for e in clean.errors("video")}
    audio_errors = {e["name"]: e["stage"] for e in clean.errors("audio")}
    assert video_errors["samplenew3_novideo"] == "missing" and audio_errors["silent"] == "missing"
    assert {e["name"]: e["stage"] for e in clean.errors("text")} == {"silent": "missing"}
    names = {s: set(_store_content(clean, s)[0]) for s in ("audio", "video", "text")}
    assert "samplenew3_novideo" in names["audio"] and "silent" in names["video"]
    assert len(names["text"]) == 18 and len(names["audio"]) == 17 and len(names["video"]) == 17
    assert clean.meta("audio")["dim"] == 16 and clean.meta("audio")["spec"].startswith("hf-audio:")

    # Every clip with any modality gets a row in the table: missing streams are zeros, marked absent.
    table, dropped = load_feature_table(messy, clean, ["audio", "text", "video"])
    assert len(table) == 19 and not dropped                    # corrupt keeps its transcript
    row = table.index_of(["samplenew3_novideo"])[0]
    assert not table.present["video"][row] and not table.streams["video"][row].any()
    assert table.present["audio"][row]
    strict, dropped = load_feature_table(messy, clean, ["audio", "text", "video"], require_all=True)
    assert set(dropped) == {"corrupt", "samplenew3_novideo", "silent"} and len(strict) == 16

    # A run killed half-way: only part of the manifest done, and a half-written part left behind.
    resumed = FeatureStore(tmp_path / "resumed")
    extract_features(messy.iloc[:9], resumed, cfg, progress=False)
    (resumed.folder("audio") / ".part-deadbeef.parquet.1234.tmp").write_bytes(b"half a part")
    done_before = set(_store_content(resumed, "audio")[0])
    summary = extract_features(messy, resumed, _config(audio_model, batch_size=3), progress=False)
    assert summary.clips == len(messy) - 9
    for stream in ("audio", "video", "text"):
        clean_names, clean_features = _store_content(clean, stream)
        names_after, features_after = _store_content(resumed, stream)
        assert names_after == clean_names
        np.testing.assert_allclose(features_after, clean_features, rtol=1e-5, atol=1e-6)
        assert resumed.errors(stream) == clean.errors(stream)
    assert done_before <= set(_store_content(resumed, "audio")[0])

    # A rerun of a finished store retries only the quarantined clip, never the missing modalities.
    assert plan(messy, resumed, dict(cfg.streams)) == {"audio": ["corrupt"], "video": ["corrupt"], "text": []}


def test_changing_a_streams_encoder_is_refused(ray_session, messy, tmp_path):
    store = FeatureStore(tmp_path / "store")
    extract_features(messy.iloc[:4], store, ExtractConfig(streams={"text": "text-bow"}), progress=False)
    with pytest.raises(ValueError, match="another stream name"):
        extract_features(messy, store, ExtractConfig(streams={"text": "text-bow?dim=64"}), progress=False)


def test_npy_round_trip_through_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "features" / "chinese-hubert-large-UTT"
    source.mkdir(parents=True)
    vectors = {f"sample_{i:08d}": rng.normal(size=24).astype(np.float32) for i in range(5)}
    for name, vector in vectors.items():
        np.save(source / f"{name}.npy", vector if name != "sample_00000001" else vector[None, :])
    assert features_cli(["import-npy", str(source), str(tmp_path / "store")]) == 0
    store = FeatureStore(tmp_path / "store")
    assert store.meta("chinese-hubert-large-UTT")["modality"] == "audio"
    out = tmp_path / "exported"
    assert features_cli(["export-npy", str(tmp_path / "store"), str(out), "--stream", "chinese-hubert-large-UTT"]) == 0
    assert sorted(p.stem for p in out.glob("*.npy")) == sorted(vectors)
    for name, vector in vectors.items():
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), vector)
    # and back in: same store content
    assert import_npy(out, FeatureStore(tmp_path / "again"), "a") == 5
    np.testing.assert_array_equal(FeatureStore(tmp_path / "again").load("a")[1], store.load("chinese-hubert-large-UTT")[1])
    assert export_npy(store, "chinese-hubert-large-UTT", tmp_path / "x") == 5


def test_npy_import_rejects_mixed_sizes_naming_the_file(tmp_path):
    (tmp_path / "m").mkdir()
    np.save(tmp_path / "m" / "a.npy", np.zeros(4, np.float32))
    np.save(tmp_path / "m" / "b.npy", np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="b.npy"):
        import_npy(tmp_path / "m", FeatureStore(tmp_path / "s"), "m")
    np.save(tmp_path / "m" / "b.npy", np.zeros((7, 4), np.float32))
    with pytest.raises(ValueError, match="frame_mean"):
        import_npy(tmp_path / "m", FeatureStore(tmp_path / "s"), "m")
    assert import_npy(tmp_path / "m", FeatureStore(tmp_path / "s"), "m", frame_mean=True) == 2


def test_extract_job_and_cli_resume_to_nothing_left(ray_session, messy, tmp_path, capsys):
    import runpy

    csv = tmp_path / "manifest.csv"
    messy.iloc[:6].assign(label=None, split="unlabeled").to_csv(csv, index=False)
    job = runpy.run_path("jobs/extract_features.py")
    args = ["--corpus", str(csv), "--store", str(tmp_path / "store"), "--stream", "text=text-bow"]
    assert job["main"](args) == 0
    assert "stored: text 6" in capsys.readouterr().out
    assert job["main"](args) == 0
    assert "extraction: 0 clips" in capsys.readouterr().out
