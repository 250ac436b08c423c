"""Seed 004's denoise rule (separation + ASR similarity): the rule on fixed transcripts, the models
from tiny random checkpoints saved offline, and the Ray Data step on the tiny corpus."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mer_ray.denoise.rule import choose_track, decide, normalise_transcript, transcript_similarity

SR = 16000
TINY_TASNET = ("sample_rate=8000&enc_kernel_size=16&enc_num_feats=16&msk_kernel_size=3&msk_num_feats=8"
               "&msk_num_hidden_feats=16&msk_num_layers=2&msk_num_stacks=1")


# -- the rule on fixed transcripts ---------------------------------------------------------------
def test_similarity_is_one_minus_character_edit_rate_ignoring_punctuation_case_and_spaces():
    assert transcript_similarity("我今天很开心", "我今天很开心") == 1.0
    # ASR systems punctuate differently; full-width and half-width forms are the same text
    assert transcript_similarity("你好，世界！", "你好 世界") == 1.0
    assert transcript_similarity("ＡＢＣ def", "abc, DEF.") == 1.0
    assert normalise_transcript("嗯，我 朋友。OK!") == "嗯我朋友ok"
    assert transcript_similarity("我今天很难过", "我今天很开心") == pytest.approx(1 - 2 / 6)   # 2 substitutions
    assert transcript_similarity("今天很开心", "我今天很开心") == pytest.approx(1 - 1 / 6)     # 1 deletion
    assert transcript_similarity("音乐", "我今天很开心") == 0.0
    assert transcript_similarity("", "我今天很开心") == 0.0
    assert transcript_similarity("", None) == 1.0               # silence heard as silence
    assert transcript_similarity("开心", "我很开心") == transcript_similarity("我很开心", "开心")


def test_rule_takes_the_track_that_leads_by_more_than_0_1_else_the_original():
    assert choose_track([0.9, 0.3]) == 0
    assert choose_track([0.3, 0.9]) == 1              # the higher similarity wins, whichever track it is
    assert choose_track([0.85, 0.8]) is None          # a near tie keeps the original
    assert choose_track([0.5, 0.4]) is None           # exactly 0.1 does not exceed 0.1
    assert choose_track([0.4, 0.3]) is None           # 0.10000000000000003 in floats: still exactly 0.1
    assert choose_track([0.41, 0.3]) == 0
    assert choose_track([0.2, 0.2], threshold=-1) == 0   # ablation "always separate": ties → track 0
    assert choose_track([1.0, 0.0], threshold=1.0) is None   # ablation "never separate"
    assert choose_track([0.2, 0.9, 0.85]) is None     # more tracks: the best must lead the second best
    with pytest.raises(ValueError, match="at least two"):
        choose_track([0.9])


def test_rule_on_fixed_transcripts_compares_each_track_with_the_original_s_transcript():
    template = "一二三四五六七八九十"   # what ASR heard in the noisy original
    # track 0 is the speech (1 error in 10 → 0.9), track 1 the noise (nothing → 0.0)
    assert decide(template, ["一二三四五六七八九拾", "音乐"]) == (0, [pytest.approx(0.9), 0.0])
    assert decide(template, ["嗯", "一二三四五六七八九十。"]) == (1, [0.0, 1.0])
    # 0.9 vs 0.8: a difference of exactly 0.1 does not exceed the threshold → original
    track, sims = decide(template, ["一二三四五六七八九拾", "一二三四五六七八玖拾"])
    assert track is None and sims == [pytest.approx(0.9), pytest.approx(0.8)]
    # 1.0 vs 0.8 exceeds it
    assert decide(template, ["一二三四五六七八九十", "一二三四五六七八玖拾"])[0] == 0


# -- tiny models saved offline -------------------------------------------------------------------
def _tiny_whisper(folder):
    """A random Whisper with a byte-level BPE tokenizer written here (no merges, one token per
    byte, so Chinese round-trips): what a real checkpoint folder holds, nothing downloaded."""
    import torch
    import transformers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: i for i, char in enumerate(bytes_to_unicode().values())}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>"]
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = transformers.WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    processor = transformers.WhisperProcessor(feature_extractor=transformers.WhisperFeatureExtractor(feature_size=80),
                                              tokenizer=tokenizer)
    eot = vocab["<|endoftext|>"]
    config = transformers.WhisperConfig(
        d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=100,  # 2 s windows
        max_target_positions=24, vocab_size=len(vocab), pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=vocab["<|startoftranscript|>"], suppress_tokens=[], begin_suppress_tokens=[])
    torch.manual_seed(0)
    transformers.WhisperForConditionalGeneration(config).save_pretrained(str(folder))
    processor.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import torch
    from torchaudio.models import ConvTasNet

    root = tmp_path_factory.mktemp("denoise-models")
    torch.manual_seed(0)
    tasnet = ConvTasNet(num_sources=2, enc_kernel_size=16, enc_num_feats=16, msk_kernel_size=3, msk_num_feats=8,
                        msk_num_hidden_feats=16, msk_num_layers=2, msk_num_stacks=1, msk_activate="relu")
    torch.save(tasnet.state_dict(), root / "tasnet.pt")
    _tiny_whisper(root / "whisper")
    return {"separator": f"convtasnet:{root / 'tasnet.pt'}?{TINY_TASNET}", "asr": f"whisper:{root / 'whisper'}"}


def _speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_tiny_separator_and_asr_give_aligned_16khz_tracks_and_one_transcript_per_clip(tiny_models, one_torch_thread):
    from mer_ray.denoise.asr import create_asr
    from mer_ray.denoise.pipeline import Denoiser
    from mer_ray.denoise.separators import create_separator

    separator, asr = create_separator(tiny_models["separator"]), create_asr(tiny_models["asr"])
    clip = _speech(1.3, 0)
    tracks = separator.separate(clip)   # 16 kHz → the model's 8 kHz → 16 kHz
    assert len(tracks) == 2 and all(t.shape == clip.shape and t.dtype == np.float32 for t in tracks)
    assert all(np.isfinite(t).all() and np.abs(t).max() > 0 for t in tracks)
    # 4.5 s is three of the tiny model's 2 s windows; transcripts come back in input order
    texts = asr.transcribe([clip, _speech(4.5, 1), tracks[0]])
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert asr.transcribe([tracks[0]]) == [texts[2]]   # batching does not change a transcript

    for threshold, expected in ((1.0, None), (-1.0, 0)):   # never / always separate
        decisions, errors = Denoiser(separator, asr, threshold).decide(["a"], [clip])
        assert errors == [] and decisions[0].track == expected
        assert decisions[0].template == texts[0]
        assert decisions[0].similarities == [transcript_similarity(t, texts[0]) for t in decisions[0].transcripts]
        if expected is None:
            assert decisions[0].audio is None and decisions[0].choice == "original"
        else:
            np.testing.assert_allclose(decisions[0].audio, tracks[0], atol=1e-5)
            assert decisions[0].choice == "separated-0"


def test_missing_or_mismatched_weights_say_what_to_do(tmp_path, tiny_models):
    from mer_ray.denoise.asr import create_asr
    from mer_ray.denoise.pipeline import import_plugins
    from mer_ray.denoise.separators import create_separator

    with pytest.raises(FileNotFoundError, match="local paths only.*convtasnet:"):
        create_separator(f"convtasnet:{tmp_path / 'missing.pt'}")
    with pytest.raises(ValueError, match="names no weights file"):
        create_separator("convtasnet")
    with pytest.raises(ValueError, match="does not fit ConvTasNet.*options"):   # the default (large) architecture
        create_separator(tiny_models["separator"].split("?")[0])
    with pytest.raises(ValueError, match="unknown option.*enc_feats"):
        create_separator(f"{tiny_models['separator']}&enc_feats=3")
    with pytest.raises(KeyError, match="registered: convtasnet"):
        create_separator("mossformer2:/models/MossFormer2_SS_8K")
    with pytest.raises(FileNotFoundError, match="does not exist.*local paths only"):
        create_asr(f"whisper:{tmp_path / 'no-whisper'}")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        create_asr(f"whisper:{tmp_path}")
    with pytest.raises(ImportError, match="plugin module 'no_such_plugin'"):
        import_plugins(["no_such_plugin"])


def test_the_step_refuses_bad_settings_before_starting_any_work(tmp_path, tiny_models):
    from mer_ray.denoise.pipeline import DenoiseConfig, denoise_corpus

    manifest = pd.DataFrame({"name": ["a"], "video": [None], "audio": [str(tmp_path / "a.wav")]})
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no-whisper does not exist.*local paths only"):
        denoise_corpus(manifest, out, DenoiseConfig(tiny_models["separator"], f"whisper:{tmp_path / 'no-whisper'}"))
    with pytest.raises(KeyError, match="unknown separator 'sepformer'"):
        denoise_corpus(manifest, out, DenoiseConfig("sepformer:/m", tiny_models["asr"]))
    assert not out.exists()   # nothing recorded for a run that never started
    with pytest.raises(ValueError, match="finite"):
        DenoiseConfig(tiny_models["separator"], tiny_models["asr"], threshold=float("nan"))


# -- the step over a corpus (Ray Data) -----------------------------------------------------------
def test_denoise_step_writes_chosen_wavs_a_readable_manifest_and_resumes(
        tiny_corpus, tiny_models, ray_session, tmp_path, capsys):
    from mer_ray.corpus.manifest import read_corpus
    from mer_ray.corpus.media import decode_clip, write_clip
    from mer_ray.denoise.pipeline import DenoiseConfig, denoise_corpus, read_decisions

    manifest = read_corpus(tiny_corpus)
    clips = pd.concat([manifest[manifest["split"] == "train"].head(2),
                       manifest[manifest["split"] == "unlabeled"].head(2)])
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    silent = tmp_path / "silent.mp4"   # a video without an audio stream
    write_clip(silent, np.zeros((4, 16, 16, 3), np.uint8), None)
    extra = pd.DataFrame([dict(name="silent_clip", video=str(silent), audio=None, transcript="好", split="unlabeled"),
                          dict(name="broken_clip", video=str(broken), audio=None, transcript="嗯", split="unlabeled")])
    clips = pd.concat([clips, extra], ignore_index=True)
    clips["label"], clips["valence"] = clips["label"].astype("Int8"), clips["valence"].astype("float32")
    good = list(clips["name"][:4])

    out = tmp_path / "denoised"
    # threshold -1: every clip with audio takes a separated track, so every output path is exercised
    cfg = DenoiseConfig(separator=tiny_models["separator"], asr=tiny_models["asr"], threshold=-1.0, batch_size=3)
    summary = denoise_corpus(clips, out, cfg, progress=False)
    assert summary.clips == 6 and summary.quarantined == {"decode": 1}
    assert summary.choices == {"separated-0": 4, "original": 1}

    decisions = read_decisions(out).set_index("name")
    assert sorted(decisions.index) == sorted([*good, "silent_clip"])
    assert decisions.loc["silent_clip", "choice"] == "original" and "no audio stream" in decisions.loc["silent_clip", "note"]
    for name in good:
        rec = decisions.loc[name]
        assert len(rec.similarities) == 2 and len(rec.transcripts) == 2
        assert choose_track(rec.similarities, -1.0) == int(rec.choice.rsplit("-", 1)[1])
    errors = pq.read_table(out / "errors.parquet").to_pylist()
    assert [(e["name"], e["stage"]) for e in errors] == [("broken_clip", "decode")]
    assert "broken.mp4" in errors[0]["message"]
    audit = pd.read_csv(out / "decisions.csv")
    assert {"similarity_0", "similarity_1", "template", "transcript_0", "transcript_1"} <= set(audit.columns)

    # the corpus reader takes the new manifest; denoised clips point at 16 kHz wavs that decode
    denoised = read_corpus(out / "manifest.csv").set_index("name")
    original = clips.set_index("name")
    assert len(denoised) == 6
    assert (denoised["label"].astype("Int8").equals(original.loc[denoised.index, "label"]))
    for name in good:
        wav = denoised.loc[name, "audio"]
        assert wav == str((out / "audio" / f"{name}.wav").resolve())
        before = decode_clip(original.loc[name, "video"], None, want=("audio",)).audio
        after = decode_clip(None, wav, want=("audio",)).audio
        assert after is not None and abs(len(after) - len(before)) <= 1
        # the track is brought to the original's peak (16-bit rounding aside)
        assert np.abs(after).max() == pytest.approx(np.abs(before).max(), abs=1e-3)
    for name in ("broken_clip", "silent_clip"):   # kept as they were
        assert pd.isna(denoised.loc[name, "audio"]) and denoised.loc[name, "video"] == original.loc[name, "video"]

    # a rerun through the job script skips the decided clips (--limit 5 leaves out the broken one,
    # which a rerun would retry) and keeps the earlier errors; other settings are refused
    from importlib import util

    spec = util.spec_from_file_location("denoise_job", "jobs/denoise_audio.py")
    job = util.module_from_spec(spec)
    spec.loader.exec_module(job)
    clips.assign(label=clips["label"].astype(object)).to_csv(tmp_path / "clips.csv", index=False)
    parts = sorted((out / "decisions").glob("part-*"))
    argv = ["--corpus", str(tmp_path / "clips.csv"), "--out", str(out), "--separator", cfg.separator,
            "--asr", cfg.asr, "--threshold", "-1", "--limit", "5"]
    assert job.main(argv) == 0
    assert "denoise: 0 clips" in capsys.readouterr().out
    assert sorted((out / "decisions").glob("part-*")) == parts
    assert [e["name"] for e in pq.read_table(out / "errors.parquet").to_pylist()] == ["broken_clip"]
    assert json.loads((out / "denoise.json").read_text())["threshold"] == -1.0
    with pytest.raises(ValueError, match="holds decisions made with"):
        denoise_corpus(clips, out, DenoiseConfig(separator=cfg.separator, asr=cfg.asr), progress=False)
    shutil.rmtree(out / "audio")   # keep the temp folder small
