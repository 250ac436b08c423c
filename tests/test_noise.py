"""MER-NOISE (seed 003): corruption, the noisy corpus copy, the demo's noisy test split, the noisy
view of the labeled clips and the clean-vs-noisy report row."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from mer_ray.corpus.demo import NOISY_SUFFIX, DemoCorpusConfig, make_demo_corpus
from mer_ray.corpus.manifest import read_corpus
from mer_ray.corpus.media import decode_clip
from mer_ray.corpus.noise import (Corruption, NoiseBank, babble, blur_frames, make_noisy_corpus, mix_at_snr,
                                  snr_db)

SR = 16000
TINY = DemoCorpusConfig(n_labeled=10, n_unlabeled=8, n_test=5, seed=7)


def _voice(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A syllabic harmonic tone, quiet enough that a 5 dB mix never needs rescaling."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 200)
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    return (0.05 * tone * (0.5 - 0.5 * np.cos(2 * np.pi * 4 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def corruption() -> Corruption:
    bank = NoiseBank(tuple(babble([_voice(seed=s) for s in range(6)], seed=0)), "babble of 6 test voices")
    return Corruption(bank, seed=0)


@pytest.fixture(scope="module")
def noisy_demo(tmp_path_factory) -> Path:
    return make_demo_corpus(tmp_path_factory.mktemp("noisy-demo") / "corpus",
                            DemoCorpusConfig(**{**TINY.__dict__, "noisy_test": True}), workers=1)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------- corruption


def test_corruption_is_deterministic_per_clip_and_seed(corruption):
    frames = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    audio = _voice(seed=9)
    first = corruption.apply("sample_00000001", frames, audio)
    again = corruption.apply("sample_00000001", frames.copy(), audio.copy())
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    # the draw depends on the clip's name and on the seed, not on call order or the process
    draws = {corruption.draw(f"sample_{i:08d}") for i in range(40)}
    assert len({d.snr_db for d in draws}) == 40
    reseeded = Corruption(corruption.noise, seed=1)
    assert reseeded.draw("sample_00000001") != corruption.draw("sample_00000001")
    # r is drawn from {1, 2, 4} and each value happens
    assert {d.factor for d in draws} == {1, 2, 4}


def test_audio_is_mixed_at_an_snr_between_5_and_10_db(corruption):
    clean = _voice(seed=3)
    measured = []
    for i in range(30):
        name = f"sample_{i:08d}"
        _, noisy = corruption.apply(name, None, clean)
        assert noisy.shape == clean.shape and noisy.dtype == np.float32
        measured.append(snr_db(clean, noisy - clean))
        assert measured[-1] == pytest.approx(corruption.draw(name).snr_db, abs=1e-3)
    assert 5.0 - 1e-3 <= min(measured) and max(measured) <= 10.0 + 1e-3
    assert max(measured) - min(measured) > 3.0      # drawn over the range, not a constant
    # a loud clip is scaled down as a whole rather than clipped: the SNR stays exact
    loud = np.clip(clean * 18, -0.99, 0.99)
    mixed = mix_at_snr(loud, corruption.noise.tracks[0], 5.0)
    assert np.abs(mixed).max() <= 1.0
    gain = float(mixed @ loud / (loud @ loud))       # the mix is gain * (loud + noise)
    assert snr_db(loud, mixed / gain - loud) == pytest.approx(5.0, abs=0.3)
    # silence has no speech to set a noise level against: left as it is
    assert np.array_equal(mix_at_snr(np.zeros(800, np.float32), corruption.noise.tracks[0], 5.0),
                          np.zeros(800, np.float32))


def _high_band_energy(frames: np.ndarray, cutoff: float) -> float:
    """Energy above `cutoff` cycles/pixel along either axis (DC removed)."""
    spectrum = np.abs(np.fft.fft2(frames.astype(np.float64) - frames.mean(), axes=(1, 2))) ** 2
    f = np.abs(np.fft.fftfreq(frames.shape[1]))
    high = (f[:, None] > cutoff) | (f[None, :] > cutoff)
    return float(spectrum[:, high].sum())


def test_downsampling_removes_high_frequencies_and_r1_is_the_identity():
    frames = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert blur_frames(frames, 1) is frames
    original = _high_band_energy(frames, 0.25)
    for r in (2, 4):
        blurred = blur_frames(frames, r)
        assert blurred.shape == frames.shape and blurred.dtype == np.uint8
        # what a 1/r-size image cannot hold (above its Nyquist, 0.5 / r) is mostly gone
        assert _high_band_energy(blurred, 0.5 / r) < 0.1 * _high_band_energy(frames, 0.5 / r)
        # and the picture is still the same picture: low frequencies survive
        assert abs(float(blurred.mean()) - float(frames.mean())) < 2.0
    assert _high_band_energy(blur_frames(frames, 4), 0.25) < _high_band_energy(blur_frames(frames, 2), 0.25) < original


def test_noise_folder_is_read_and_a_bad_one_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        NoiseBank.from_folder(tmp_path / "musan")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no audio file"):
        NoiseBank.from_folder(tmp_path / "empty")
    folder = tmp_path / "speech"
    folder.mkdir()
    noise = np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32)
    with av.open(str(folder / "talk.wav"), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(noise[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = SR, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    bank = NoiseBank.from_folder(folder)
    assert len(bank.tracks) == 1 and abs(bank.tracks[0].size - SR) < 200
    assert np.corrcoef(bank.tracks[0][:15000], noise[:15000])[0, 1] > 0.99


# ----------------------------------------------------------------------- corpora with noise


def test_make_noisy_corpus_writes_decodable_clips_with_the_same_names(noisy_demo, tmp_path):
    noisy = make_noisy_corpus(noisy_demo, tmp_path / "noisy", seed=0, workers=1)
    clean_manifest, noisy_manifest = read_corpus(noisy_demo), read_corpus(noisy)
    assert sorted(noisy_manifest["name"]) == sorted(clean_manifest["name"])
    assert noisy_manifest.set_index("name")["split"].equals(clean_manifest.set_index("name")["split"])
    for table in ("label-disdim.csv", "label-transcription.csv", "truth/test.csv"):
        assert (noisy / table).read_bytes() == (noisy_demo / table).read_bytes()
    assert not (noisy / "features").exists() and json.loads((noisy / "noise.json").read_text())["corrupted"] == len(clean_manifest)
    corruption = Corruption(NoiseBank.babble_from_clips(list(clean_manifest["video"]), seed=0), seed=0)
    factors = set()
    for name in sorted(clean_manifest["name"])[:8]:
        folder = "video-labeled" if name in set(clean_manifest.loc[clean_manifest["split"] == "train", "name"]) \
            else "video-unlabeled-with-test2noise"
        clean = decode_clip(noisy_demo / folder / f"{name}.mp4", num_frames=4)
        dirty = decode_clip(noisy / folder / f"{name}.mp4", num_frames=4)
        assert dirty.frames.shape == clean.frames.shape
        # the noise dominates the codec's own error: the noisy audio is 5-10 dB below the clean one
        n = min(clean.audio.size, dirty.audio.size)
        measured = snr_db(clean.audio[:n], dirty.audio[:n] - clean.audio[:n])
        assert 3.0 < measured < 11.0, (name, measured)
        factors.add(corruption.draw(name).factor)
    assert factors - {1}, "some clip was blurred"


def test_demo_noisy_test_split_is_scored_apart_and_keeps_the_clean_clips(noisy_demo, tmp_path):
    clean_only = make_demo_corpus(tmp_path / "clean", TINY, workers=1)
    pool = noisy_demo / "video-unlabeled-with-test2noise"
    for path in (clean_only / "video-labeled").glob("*.mp4"):
        assert (noisy_demo / "video-labeled" / path.name).read_bytes() == path.read_bytes()
    for path in (clean_only / "video-unlabeled-with-test2noise").glob("*.mp4"):
        assert (pool / path.name).read_bytes() == path.read_bytes()
    test = {r["name"]: r["discrete"] for r in _rows(noisy_demo / "truth" / "test.csv")}
    noisy = {r["name"]: r["discrete"] for r in _rows(noisy_demo / "truth" / "test-noisy.csv")}
    assert noisy == {name + NOISY_SUFFIX: label for name, label in test.items()}
    assert all((pool / f"{name}.mp4").exists() for name in noisy)
    transcripts = {r["name"]: r["english"] for r in _rows(noisy_demo / "label-transcription.csv")}
    assert all(transcripts[name + NOISY_SUFFIX] == transcripts[name] for name in test)
    assert json.loads((noisy_demo / "corpus.json").read_text())["counts"]["test-noisy"] == TINY.n_test


# ------------------------------------------------------------- noisy view and noisy test row


def test_noisy_view_adds_training_rows_that_never_reach_dev_or_the_pool(ray_session, noisy_demo, tmp_path):
    from mer_ray.config import ExtractConfig, MiningConfig, RunConfig
    from mer_ray.corpus.truth import read_truth
    from mer_ray.features.table import NOISY_VIEW
    from mer_ray.mining.run import prepare_data, resolve

    streams = {"audio": "logmel-stats", "text": "text-bow"}   # one corrupted stream, one not: enough, and fast
    cfg = resolve(RunConfig(corpus=str(noisy_demo), out=str(tmp_path / "run"), store=str(tmp_path / "store"),
                            mining=MiningConfig(dev_fraction=0.3, folds=0),   # noisy views train beside a dev split
                            extract=ExtractConfig(streams=streams, noisy_view=True)))
    data, _ = prepare_data(cfg)
    table = data.table
    names = table.names.astype(str)
    noisy_rows = np.flatnonzero(np.char.endswith(names, NOISY_VIEW))
    labeled = np.flatnonzero((table.split == "train") & ~np.char.endswith(names, NOISY_VIEW))
    assert len(labeled) == TINY.n_labeled and len(noisy_rows) == TINY.n_labeled
    source = table.index_of([n[: -len(NOISY_VIEW)] for n in names[noisy_rows]])
    assert np.array_equal(table.label[noisy_rows], table.label[source])
    # split by source clip: a noisy copy trains exactly when its clean clip does
    train_sources = set(np.intersect1d(data.train, labeled))
    assert set(np.intersect1d(data.train, noisy_rows)) == {r for r, s in zip(noisy_rows, source) if s in train_sources}
    assert len(data.dev) and not set(data.dev) & set(noisy_rows)
    assert not set(data.pool) & set(noisy_rows) and not set(data.test) & set(noisy_rows)
    # the corrupted streams differ from the clean clip, the transcript's do not
    assert not np.allclose(table.streams["audio"][noisy_rows], table.streams["audio"][source])
    assert np.array_equal(table.streams["text"][noisy_rows], table.streams["text"][source])
    # the noisy test clips are scored apart and never mined
    truth = read_truth(noisy_demo / "truth")
    assert sorted(names[data.noisy_test]) == sorted(truth.noisy_test)
    assert not set(data.pool) & set(data.noisy_test) and not set(data.test) & set(data.noisy_test)
    assert list(data.noisy_test_labels) == [truth.noisy_test[n] for n in names[data.noisy_test]]


def test_report_shows_the_noisy_test_row(tmp_path):
    from mer_ray.report import write_report

    learners = {m: {"dev_waf": 0.5, "dev_acc": 0.5} for m in ("M1", "M2")}
    rounds = [dict(round=r, train_size=100 + 10 * r, mined=10 * r, pseudo_label_precision=None if r == 0 else 0.8,
                   mined_per_class={}, learners=learners, dev_waf=0.55, test_waf=0.6 + 0.01 * r,
                   noisy_test_waf=0.4 + 0.02 * r, noisy_test_acc=0.45, noisy_test_uar=0.35) for r in (0, 1)]
    final = dict(test_waf=0.61, test_acc=0.62, test_uar=0.6, noisy_test_waf=0.4234, noisy_test_acc=0.45,
                 noisy_test_uar=0.3456)
    (tmp_path / "metrics.json").write_text(json.dumps({"rounds": rounds, "final": final}))
    page = write_report(tmp_path).read_text()
    row = page[page.index("mining (final ensemble) — noisy test"):].split("</tr>")[0]
    assert "0.4234" in row and "0.4500" in row and "0.3456" in row
    assert "noisy test WAF" in page and "0.4200" in page      # per round, beside the clean test WAF
