"""A synthetic MER 2024-layout corpus that exercises the whole pipeline on a laptop in minutes.

Each clip is a real .mp4 (a moving blob on a noisy background + a buzzy harmonic "voice") with
an English transcript. Every class leaves a cue in every modality, but each cue is noisy on
purpose, so that the demo behaves like MER data where it matters for cyclic mining (seed 004):
- per clip and per modality the cue can come from a wrong class or be weak, and nuisances
  (speaker pitch, recording level, lighting, colour cast, background) blur it, so no single
  modality is enough and learners that look at different modalities disagree;
- the cue vocabulary is large enough (many emotion words, wide parameter spreads) that 300
  labeled clips under-fit it while 1,800 do not: the gap pseudo-label mining recovers;
- classes are imbalanced like MER (worried and surprise rare) and 10% of the labeled clips
  carry a wrong label, as annotator disagreement does.
The true labels of the unlabeled pool and of the test clips go to `truth/` so that rounds can
report pseudo-label precision and test metrics.
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..labels import EMOTIONS, NUM_CLASSES
from .media import write_clip
from .noise import Corruption, NoiseBank, babble

__all__ = ["NOISY_SUFFIX", "DemoCorpusConfig", "DemoClip", "demo_corpus", "make_demo_corpus", "plan_demo_corpus",
           "render_clip"]

GENERATOR_VERSION = 1

NOISY_SUFFIX = "_noisy"   # the noisy test copy of clip X is clip X_noisy
LABELED_DIR = "video-labeled"
UNLABELED_DIR = "video-unlabeled-with-test2noise"


@dataclass(frozen=True)
class DemoCorpusConfig:
    """Size, seed and noise knobs of the demo corpus; the defaults are tuned (see module doc)."""

    n_labeled: int = 300
    n_unlabeled: int = 1500
    n_test: int = 300
    seed: int = 0
    label_noise: float = 0.1  # share of labeled clips whose label is flipped to another class
    # MER 2023/2024 class balance: neutral, angry, happy, sad, worried, surprise.
    class_priors: tuple[float, ...] = (0.27, 0.24, 0.22, 0.14, 0.07, 0.06)
    cue_wrong: float = 0.12  # per clip and cue group: the cue comes from another class
    cue_weak: float = 0.15  # per clip and cue group: the cue is faint (pulled towards neutral)
    text_distractor: float = 0.25  # share of transcripts with an emotion word of another class
    cue_spread: float = 0.6  # scales the per-clip jitter of every cue parameter (0.6: round-0 learners ~0.6 WAF, mining lifts them)
    min_seconds: float = 1.0
    max_seconds: float = 3.0
    fps: int = 10
    frame_size: int = 64
    sample_rate: int = 16000
    video_codec: str = "mpeg4"
    # MER-NOISE (seed 003): also write a corrupted copy of every test clip, `<name>_noisy`, scored
    # apart in truth/test-noisy.csv (babble of pool clips at 5-10 dB SNR, blur r in {1, 2, 4})
    noisy_test: bool = False

    def __post_init__(self) -> None:
        for name in ("n_labeled", "n_unlabeled", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"DemoCorpusConfig.{name} must be >= 0, got {getattr(self, name)}")
        if len(self.class_priors) != NUM_CLASSES or min(self.class_priors) <= 0:
            raise ValueError(f"class_priors needs {NUM_CLASSES} positive shares, got {self.class_priors}")
        for name in ("label_noise", "cue_wrong", "cue_weak"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DemoCorpusConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}")


# ------------------------------------------------------------------------------- class cues
# One row per class, in EMOTIONS order (neutral, angry, happy, sad, worried, surprise).

# Voice: log2 pitch ratio to the speaker's base, contour slope (semitones/s), syllable rate
# (Hz), loudness (dB), vibrato depth (share of f0), harmonic brightness (spectral tilt).
AUDIO_CUES = np.array([
    [0.00, 0.0, 4.0, 0.0, 0.00, 1.4],
    [0.30, -4.0, 6.0, 7.0, 0.01, 0.8],
    [0.45, 3.0, 5.0, 3.0, 0.02, 1.1],
    [-0.20, -2.5, 2.5, -5.0, 0.00, 1.9],
    [0.15, 1.5, 3.5, -2.0, 0.05, 1.6],
    [0.65, 8.0, 4.5, 4.0, 0.02, 1.0],
])
AUDIO_SPREAD = np.array([0.12, 2.0, 0.7, 2.5, 0.012, 0.25])

# Scene: tint colour (RGB), tint strength, blob radius (px), orbit radius (px), angular speed
# (rad/s), shake (px per frame).
TINTS = np.array([
    [0.50, 0.50, 0.50],
    [0.90, 0.15, 0.10],
    [0.95, 0.80, 0.15],
    [0.15, 0.30, 0.90],
    [0.55, 0.25, 0.65],
    [0.15, 0.85, 0.70],
])
VIDEO_CUES = np.array([
    [0.00, 9.0, 3.0, 1.0, 0.3],
    [0.28, 13.0, 10.0, 4.5, 1.0],
    [0.28, 11.0, 8.0, 3.0, 0.5],
    [0.28, 7.0, 2.0, 0.7, 0.2],
    [0.28, 8.0, 4.0, 2.0, 2.2],
    [0.28, 15.0, 12.0, 6.0, 0.8],
])
VIDEO_SPREAD = np.array([0.11, 2.6, 3.2, 1.3, 0.5])

# Columns of the cue tables that move together (one cue group each, see plan_demo_corpus).
AUDIO_GROUPS = ([0, 1, 4], [2, 3, 5])  # pitch level, contour, vibrato | rate, loudness, timbre
VIDEO_GROUPS = ([0], [1, 2, 3, 4])  # tint | disc size and motion
CUE_GROUPS = 5

# Transcript: each class has a dozen emotion words, so 300 labeled clips see each only a
# couple of times (the words a bag-of-words model must learn from the mined clips).
EMOTION_WORDS: tuple[tuple[str, ...], ...] = (
    ("okay", "fine", "normal", "usual", "alright", "ordinary", "routine", "regular", "calm",
     "steady", "plain", "average"),
    ("furious", "angry", "mad", "annoyed", "outraged", "hate", "irritated", "livid",
     "disgusting", "unacceptable", "enraged", "fed up"),
    ("happy", "great", "wonderful", "glad", "delighted", "love", "fantastic", "joy",
     "excited", "pleased", "awesome", "cheerful"),
    ("sad", "miss", "lonely", "crying", "heartbroken", "lost", "gloomy", "unhappy",
     "depressed", "sorrow", "tears", "down"),
    ("worried", "afraid", "nervous", "anxious", "scared", "uneasy", "concerned", "fear",
     "tense", "panic", "doubt", "risky"),
    ("wow", "unbelievable", "suddenly", "shocked", "unexpected", "really", "amazing",
     "surprised", "astonished", "whoa", "no way", "incredible"),
)
FILLERS = ("um", "uh", "well", "you know", "like", "so", "hmm", "I mean")
SUBJECTS = ("I", "we", "my friend", "he", "she", "they", "my brother", "the teacher")
EVENTS = ("went to the market", "talked about the project", "saw the news", "came home late",
          "called my mother", "met the teacher", "read the message", "finished the work",
          "waited for the bus", "looked at the photos", "opened the door", "heard the result")
FRAMES = ("I feel {w}", "it is {w}", "{w}", "so {w}", "that was {w}", "honestly {w}")

# A rough Chinese rendering for label-transcription.csv (MER 2024 ships Chinese and English).
CHINESE = {
    "um": "嗯", "uh": "呃", "well": "好吧", "you know": "你知道", "like": "就是", "so": "所以",
    "hmm": "嗯哼", "I mean": "我是说", "I": "我", "we": "我们", "my friend": "我朋友", "he": "他",
    "she": "她", "they": "他们", "my brother": "我哥哥", "the teacher": "老师",
    "went to the market": "去了市场", "talked about the project": "谈了项目", "saw the news": "看了新闻",
    "came home late": "很晚回家", "called my mother": "给妈妈打了电话", "met the teacher": "见了老师",
    "read the message": "看了消息", "finished the work": "完成了工作", "waited for the bus": "等了公交车",
    "looked at the photos": "看了照片", "opened the door": "开了门", "heard the result": "听到了结果",
    "I feel": "我觉得", "it is": "这是", "that was": "那真是", "honestly": "说实话",
    "okay": "还行", "fine": "挺好", "normal": "正常", "usual": "平常", "alright": "没事",
    "ordinary": "普通", "routine": "例行", "regular": "一般", "calm": "平静", "steady": "稳定",
    "plain": "平淡", "average": "一般般",
    "furious": "暴怒", "angry": "生气", "mad": "气疯了", "annoyed": "烦", "outraged": "愤慨",
    "hate": "讨厌", "irritated": "恼火", "livid": "气坏了", "disgusting": "恶心",
    "unacceptable": "不能接受", "enraged": "激怒", "fed up": "受够了",
    "happy": "开心", "great": "太好了", "wonderful": "美好", "glad": "高兴", "delighted": "欣喜",
    "love": "喜欢", "fantastic": "棒极了", "joy": "快乐", "excited": "激动", "pleased": "满意",
    "awesome": "厉害", "cheerful": "愉快",
    "sad": "难过", "miss": "想念", "lonely": "孤独", "crying": "哭", "heartbroken": "心碎",
    "lost": "失落", "gloomy": "郁闷", "unhappy": "不开心", "depressed": "沮丧", "sorrow": "悲伤",
    "tears": "眼泪", "down": "低落",
    "worried": "担心", "afraid": "害怕", "nervous": "紧张", "anxious": "焦虑", "scared": "吓人",
    "uneasy": "不安", "concerned": "忧虑", "fear": "恐惧", "tense": "紧绷", "panic": "慌",
    "doubt": "怀疑", "risky": "有风险",
    "wow": "哇", "unbelievable": "难以置信", "suddenly": "突然", "shocked": "震惊",
    "unexpected": "意外", "really": "真的吗", "amazing": "惊人", "surprised": "惊讶",
    "astonished": "吃惊", "whoa": "哇哦", "no way": "不会吧", "incredible": "不可思议",
}

# Valence (mean, sd) per class on the [-5, 5] scale of MER 2023.
VALENCE = np.array([[0.0, 0.8], [-3.2, 1.0], [3.0, 1.0], [-3.0, 1.0], [-1.8, 1.0], [1.2, 1.5]])


@dataclass(frozen=True)
class DemoClip:
    """Everything needed to render one clip; planned up front so rendering is order-free."""

    index: int
    name: str
    split: str  # "train" | "unlabeled" | "test"
    label: int  # true class
    given_label: int  # label written to label-disdim.csv (label noise applied)
    valence: float
    seconds: float
    audio_params: tuple[float, ...]
    video_params: tuple[float, ...]  # tint strength, radius, orbit, speed, shake
    tint: tuple[float, float, float]
    english: str
    chinese: str
    # Class shown by each cue group: audio pitch, audio tempo-energy, video colour, video
    # motion, text words.
    cue_classes: tuple[int, ...] = field(default=())


def _cue_class(label: int, wrong: float, priors: np.ndarray, rng: np.random.Generator) -> int:
    """The class whose cue a modality shows: usually the true one, sometimes another."""
    if rng.random() >= wrong:
        return label
    others = np.delete(np.arange(NUM_CLASSES), label)
    weights = np.delete(priors, label) ** 0.5  # wrong cues lean to common classes, not only
    return int(rng.choice(others, p=weights / weights.sum()))


def _cue_strength(weak: float, rng: np.random.Generator) -> float:
    return float(rng.uniform(0.0, 0.4)) if rng.random() < weak else float(rng.uniform(0.8, 1.2))


def _transcript(cue: int, strength: float, distractor: int | None,
                rng: np.random.Generator) -> tuple[str, str]:
    """An English sentence and its rough Chinese rendering.

    A weak text cue is a sentence with no word of its class (many MER utterances say nothing
    about the speaker's state); otherwise one or two words of the cue class appear. A
    distractor adds one word of another class ("glad it's over but still worried").
    """
    parts: list[str] = []
    if rng.random() < 0.5:
        parts.append(str(rng.choice(FILLERS)))
    parts += [str(rng.choice(SUBJECTS)), str(rng.choice(EVENTS))]
    emotion: list[str] = []
    if strength >= 0.5:
        emotion += [str(w) for w in rng.choice(EMOTION_WORDS[cue], size=1 + int(rng.random() < 0.3), replace=False)]
    if distractor is not None and distractor != cue:
        emotion.append(str(rng.choice(EMOTION_WORDS[distractor])))
    if emotion:
        order = rng.permutation(len(emotion))
        lead = str(rng.choice(FRAMES)).partition("{w}")[0].strip()
        parts += ([lead] if lead else []) + [emotion[i] for i in order]
    if rng.random() < 0.3:
        parts.append(str(rng.choice(FILLERS)))
    english = " ".join(parts)
    chinese = "，".join(CHINESE[p] for p in parts)
    return english[0].upper() + english[1:] + ".", chinese + "。"


def plan_demo_corpus(cfg: DemoCorpusConfig) -> list[DemoClip]:
    """Draw every clip's class, cues and nuisances from `cfg.seed` (the only randomness)."""
    rng = np.random.default_rng(cfg.seed)
    priors = np.asarray(cfg.class_priors, dtype=np.float64)
    priors = priors / priors.sum()
    total = cfg.n_labeled + cfg.n_unlabeled + cfg.n_test
    splits = ["train"] * cfg.n_labeled + ["unlabeled"] * cfg.n_unlabeled + ["test"] * cfg.n_test
    # Names are a permutation of the clip order, so name order does not reveal the split.
    name_ids = rng.permutation(total)
    clips: list[DemoClip] = []
    for index in range(total):
        label = int(rng.choice(NUM_CLASSES, p=priors))
        given = label
        if splits[index] == "train" and rng.random() < cfg.label_noise:
            given = int(rng.choice(np.delete(np.arange(NUM_CLASSES), label)))
        mean, sd = VALENCE[label]
        valence = float(np.clip(round(rng.normal(mean, sd), 2), -5.0, 5.0))
        seconds = float(round(rng.uniform(cfg.min_seconds, cfg.max_seconds), 2))

        # Each modality carries two independent cue groups (audio: pitch / tempo-energy, video:
        # colour / motion, text: main words / distractor word). When the groups disagree the
        # modality alone cannot decide between two classes, but another modality can: this is
        # what makes fusion, and learners over different modality subsets, worth having.
        cues = tuple(_cue_class(label, cfg.cue_wrong, priors, rng) for _ in range(CUE_GROUPS))
        strengths = tuple(_cue_strength(cfg.cue_weak, rng) for _ in range(CUE_GROUPS))
        spread = cfg.cue_spread
        audio = np.empty(AUDIO_CUES.shape[1])
        for group, columns in enumerate(AUDIO_GROUPS):
            target = AUDIO_CUES[0, columns] + strengths[group] * (AUDIO_CUES[cues[group], columns] - AUDIO_CUES[0, columns])
            audio[columns] = target + rng.normal(0.0, 1.0, len(columns)) * AUDIO_SPREAD[columns] * spread
        video = np.empty(VIDEO_CUES.shape[1])
        for group, columns in enumerate(VIDEO_GROUPS, start=2):
            target = VIDEO_CUES[0, columns] + strengths[group] * (VIDEO_CUES[cues[group], columns] - VIDEO_CUES[0, columns])
            video[columns] = target + rng.normal(0.0, 1.0, len(columns)) * VIDEO_SPREAD[columns] * spread
        distractor = _cue_class(label, 1.0, priors, rng) if rng.random() < cfg.text_distractor else None
        english, chinese = _transcript(cues[4], strengths[4], distractor, rng)
        clips.append(DemoClip(
            index=index, name=f"sample_{name_ids[index]:08d}", split=splits[index], label=label,
            given_label=given, valence=valence, seconds=seconds,
            audio_params=tuple(float(x) for x in audio), video_params=tuple(float(x) for x in video),
            tint=tuple(float(x) for x in TINTS[cues[2]]), english=english, chinese=chinese,
            cue_classes=cues,
        ))
    return clips


# ---------------------------------------------------------------------------------- rendering


def _render_audio(clip: DemoClip, cfg: DemoCorpusConfig, rng: np.random.Generator) -> np.ndarray:
    """A harmonic 'voice' whose pitch, contour, tempo and loudness carry the audio cue.

    Nuisances: the speaker's base pitch, the recording level and the background noise level.
    """
    sr = cfg.sample_rate
    n = int(round(clip.seconds * sr))
    t = np.arange(n) / sr
    ratio, slope, rate, loudness, vibrato, tilt = clip.audio_params
    base = 2.0 ** rng.uniform(np.log2(105.0), np.log2(190.0))  # speaker
    semitones = slope * (t - clip.seconds / 2.0)
    f0 = base * 2.0 ** (ratio + semitones / 12.0) * (1.0 + max(vibrato, 0.0) * np.sin(2 * np.pi * 5.5 * t))
    f0 = np.clip(f0, 60.0, 700.0)
    phase = 2.0 * np.pi * np.cumsum(f0) / sr
    harmonics = np.arange(1, 9)
    amplitudes = 1.0 / harmonics ** max(tilt, 0.3)
    # Drop harmonics above Nyquist so that high voices do not alias.
    voice = np.zeros(n)
    for k, a in zip(harmonics, amplitudes):
        voice += np.where(k * f0 < sr / 2 - 200, a, 0.0) * np.sin(k * phase)
    voice /= amplitudes.sum()
    # Syllables: a raised-cosine envelope at the speaking rate, with random pauses.
    rate = float(np.clip(rate, 1.0, 9.0))
    syllable_phase = rate * t + rng.uniform(0, 1)
    envelope = (0.5 - 0.5 * np.cos(2 * np.pi * syllable_phase)) ** 1.5
    syllable_gain = rng.uniform(0.5, 1.0, int(np.ceil(syllable_phase.max())) + 1)
    syllable_gain[rng.random(len(syllable_gain)) < 0.15] = 0.05  # pauses
    envelope *= syllable_gain[syllable_phase.astype(np.int64)]
    level_db = loudness + rng.uniform(-5.0, 5.0)  # + recording level
    signal = 0.12 * 10.0 ** (level_db / 20.0) * voice * envelope
    noise_db = rng.uniform(-48.0, -30.0)  # background noise, absolute level
    signal += 10.0 ** (noise_db / 20.0) * rng.normal(0.0, 1.0, n)
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


def _render_video(clip: DemoClip, cfg: DemoCorpusConfig, rng: np.random.Generator) -> np.ndarray:
    """A bright or dark disc orbiting on a noisy, colour-cast background.

    The cue is the tint of the scene, the disc size and how fast and how shakily it moves; the
    nuisances are lighting, a random colour cast, the noise level and the disc's polarity.
    """
    size = cfg.frame_size
    count = max(2, int(round(clip.seconds * cfg.fps)))
    strength, radius, orbit, speed, shake = clip.video_params
    radius = float(np.clip(radius, 3.0, size / 3)) * size / 64
    orbit = float(np.clip(orbit, 0.0, size / 3)) * size / 64
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)

    brightness = rng.uniform(0.35, 0.65)
    cast = rng.uniform(0.0, 1.0, 3)
    cast_strength = rng.uniform(0.0, 0.3)
    gradient = (xs / size - 0.5) * rng.uniform(-0.2, 0.2) + (ys / size - 0.5) * rng.uniform(-0.2, 0.2)
    background = brightness + gradient[..., None] + cast_strength * (cast - 0.5)[None, None, :]
    noise_sd = rng.uniform(0.02, 0.07)
    polarity = 1.0 if rng.random() < 0.5 else -1.0
    contrast = polarity * rng.uniform(0.25, 0.4)
    tint = np.asarray(clip.tint, dtype=np.float32)
    alpha = float(np.clip(strength, 0.0, 0.6))

    centre = size / 2 + rng.uniform(-size / 10, size / 10, 2)
    start = rng.uniform(0, 2 * np.pi)
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        angle = start + speed * i / cfg.fps
        cx = centre[0] + orbit * np.cos(angle) + rng.normal(0.0, max(shake, 0.0))
        cy = centre[1] + orbit * np.sin(angle) + rng.normal(0.0, max(shake, 0.0))
        disc = ((xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2).astype(np.float32)
        image = background + contrast * disc[..., None]
        image = (1.0 - alpha) * image + alpha * tint * (image.mean(-1, keepdims=True) + 0.3)
        image = image + rng.normal(0.0, noise_sd, image.shape)
        frames[i] = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return frames


def render_clip(clip: DemoClip, cfg: DemoCorpusConfig) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [T, H, W, 3], audio float32) of one clip, from its own seeded stream, so
    the result does not depend on which worker renders it or in what order."""
    rng = np.random.default_rng([cfg.seed, clip.index, GENERATOR_VERSION])
    return _render_video(clip, cfg, rng), _render_audio(clip, cfg, rng)


def _write_clips(out_dir: str, clips: list[DemoClip], cfg: DemoCorpusConfig,
                 corruption: Corruption | None = None) -> int:
    """Worker task: render and write a chunk of clips under `out_dir` (and, given `corruption`,
    the noisy copy of each test clip beside it)."""
    for clip in clips:
        frames, audio = render_clip(clip, cfg)
        folder = LABELED_DIR if clip.split == "train" else UNLABELED_DIR
        write_clip(Path(out_dir) / folder / f"{clip.name}.mp4", frames, audio, fps=cfg.fps,
                   sample_rate=cfg.sample_rate, video_codec=cfg.video_codec)
        if corruption is not None and clip.split == "test":
            frames, audio = corruption.apply(clip.name, frames, audio)
            write_clip(Path(out_dir) / folder / f"{clip.name}{NOISY_SUFFIX}.mp4", frames, audio, fps=cfg.fps,
                       sample_rate=cfg.sample_rate, video_codec=cfg.video_codec)
    return len(clips)


def noisy_test_corruption(clips: list[DemoClip], cfg: DemoCorpusConfig) -> Corruption:
    """Seed 003's corruption for the noisy test copies. The demo has no MUSAN, so the noise is
    babble of pool clips' voices (rendered here, so no file needs to exist yet)."""
    pool = [c for c in clips if c.split == "unlabeled"] or [c for c in clips if c.split != "test"]
    rng = np.random.default_rng([cfg.seed, 0xBAB])
    talkers = [pool[i] for i in sorted(rng.permutation(len(pool))[:24])]
    voices = [render_clip(c, cfg)[1] for c in talkers]
    bank = NoiseBank(tuple(babble(voices, seed=cfg.seed, sample_rate=cfg.sample_rate)),
                     f"babble of {len(voices)} demo pool clips (seed {cfg.seed})")
    return Corruption(bank, seed=cfg.seed)


# ------------------------------------------------------------------------------------- writing


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_tables(out_dir: Path, clips: list[DemoClip], cfg: DemoCorpusConfig) -> None:
    by_name = sorted(clips, key=lambda c: c.name)

    def label_rows(split: str, given: bool) -> list[list[object]]:
        return [[c.name, EMOTIONS[c.given_label if given else c.label], f"{c.valence:.2f}"]
                for c in by_name if c.split == split]

    _write_csv(out_dir / "label-disdim.csv", ["name", "discrete", "valence"], label_rows("train", True))
    noisy = [c for c in by_name if c.split == "test"] if cfg.noisy_test else []
    # a noisy copy says what its clean clip says: seed 003 corrupts only the audio and the frames
    transcripts = [[c.name, c.chinese, c.english] for c in by_name]
    transcripts += [[c.name + NOISY_SUFFIX, c.chinese, c.english] for c in noisy]
    _write_csv(out_dir / "label-transcription.csv", ["name", "chinese", "english"], sorted(transcripts))
    _write_csv(out_dir / "truth" / "test.csv", ["name", "discrete", "valence"], label_rows("test", False))
    _write_csv(out_dir / "truth" / "unlabeled.csv", ["name", "discrete", "valence"],
               label_rows("unlabeled", False))
    counts = {split: sum(c.split == split for c in clips) for split in ("train", "unlabeled", "test")}
    if cfg.noisy_test:
        _write_csv(out_dir / "truth" / "test-noisy.csv", ["name", "discrete", "valence"],
                   [[c.name + NOISY_SUFFIX, EMOTIONS[c.label], f"{c.valence:.2f}"] for c in noisy])
        counts["test-noisy"] = len(noisy)
    per_class = {
        split: {EMOTIONS[k]: sum(c.split == split and c.label == k for c in clips) for k in range(NUM_CLASSES)}
        for split in ("train", "unlabeled", "test")
    }
    meta = {
        "generator": "mer_ray.corpus.demo",
        "generator_version": GENERATOR_VERSION,
        "layout": "MER2024",
        "config": asdict(cfg),
        "counts": counts,
        "true_class_counts": per_class,
        "flipped_labels": sum(c.label != c.given_label for c in clips),
    }
    (out_dir / "corpus.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _is_complete(root: Path, cfg: DemoCorpusConfig) -> bool:
    try:
        meta = json.loads((root / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("config") == json.loads(json.dumps(asdict(cfg))) and meta.get(
        "generator_version") == GENERATOR_VERSION


def make_demo_corpus(
    root: str | Path,
    cfg: DemoCorpusConfig = DemoCorpusConfig(),
    *,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the demo corpus in the MER 2024 layout under `root` and return `root`.

    The clips are rendered in a temporary sibling folder that is renamed to `root` only when
    everything is written, so an interrupted run leaves no half corpus and simply reruns. A
    `root` that already holds a demo corpus with the same config is returned as is (a rerun
    is free); one holding anything else is an error unless `overwrite=True`.
    `workers` processes render the clips (default: all cores; 1 renders in this process).
    """
    root = Path(root).resolve()
    if root.exists():
        if _is_complete(root, cfg) and not overwrite:
            return root
        if any(root.iterdir()) and not overwrite:
            raise FileExistsError(
                f"{root} exists and is not a demo corpus with this config; pick another folder "
                f"or pass overwrite=True (--overwrite) to replace it"
            )
    clips = plan_demo_corpus(cfg)
    staging = root.parent / f".{root.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)  # left over from an interrupted run
    for folder in (LABELED_DIR, UNLABELED_DIR):
        (staging / folder).mkdir(parents=True)

    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    started = time.perf_counter()
    corruption = noisy_test_corruption(clips, cfg) if cfg.noisy_test and cfg.n_test else None
    if workers == 1 or len(clips) < 32:
        _write_clips(str(staging), clips, cfg, corruption)
    else:
        # Interleaved chunks keep long and short clips spread over workers; spawn, not fork,
        # because the caller may be a Ray driver with threads running.
        chunks = [clips[i :: workers * 8] for i in range(workers * 8)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            list(pool.map(_write_clips, [str(staging)] * len(chunks), chunks, [cfg] * len(chunks),
                          [corruption] * len(chunks)))
    _write_tables(staging, clips, cfg)

    if root.exists():
        shutil.rmtree(root)
    os.replace(staging, root)
    elapsed = time.perf_counter() - started
    print(f"demo corpus: {len(clips)} clips ({cfg.n_labeled} labeled, {cfg.n_unlabeled} unlabeled, "
          f"{cfg.n_test} test{' + their noisy copies' if corruption else ''}) written to {root} in {elapsed:.1f} s with {workers} worker(s)")
    return root


DEMO_CACHE = Path(".cache")   # where a job with no --corpus keeps the generated demo corpus


def demo_corpus(seed: int = 0, root: Path = DEMO_CACHE) -> Path:
    """The generated demo corpus, made on first use and reused after (free when complete).

    The folder name carries a digest of the generator's config, so a changed generator never
    silently reuses a stale corpus."""
    import hashlib

    cfg = DemoCorpusConfig(seed=seed, noisy_test=True)   # + MER-NOISE copies of the test clips
    digest = hashlib.sha1(repr(cfg).encode()).hexdigest()[:8]
    path = root / f"demo-corpus-seed{seed}-{digest}"
    if not (path / "corpus.json").exists():
        print(f"generating the demo corpus into {path} (once) ...", flush=True)
    return make_demo_corpus(path, cfg)
