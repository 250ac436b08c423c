"""MER-NOISE corruption (seed 003): speech noise at 5-10 dB SNR, blur by down/up-sampling.

Seed 003's recipe, per clip (video-level corruption, no partial corruption):
  - audio: a noise recording (MUSAN *speech*: music and environmental noise carry emotion of
    their own) is cropped to the clip's length, scaled to a speech-to-noise ratio drawn
    uniformly from [5, 10] dB, and added;
  - video: one factor r drawn from {1, 2, 4} for the whole clip; every frame is down-sampled by r
    (details lost) and up-sampled back to its size. r = 1 leaves the frames untouched.

Everything here is pure numpy on decoded clips (16 kHz float32 mono, uint8 [T, H, W, 3] frames),
and every draw comes from a generator seeded by (seed, clip name) through a stable hash, so a
clip gets the same SNR, r and noise segment in any process, on any worker, in any order.

Without a noise folder, `babble` builds speech-like noise from the corpus's own clips: several
other speakers talking at once, the closest thing to MUSAN speech a corpus carries itself.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["AUDIO_EXTENSIONS", "Corruption", "Draw", "NoiseBank", "babble", "blur_frames", "clip_rng",
           "mix_at_snr", "snr_db"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")


def clip_rng(seed: int, name: str, purpose: str = "") -> np.random.Generator:
    """A generator that depends only on (seed, clip name, purpose): Python's hash() is salted
    per process, so it would give another draw on every Ray worker."""
    digest = hashlib.sha256(f"{purpose}\0{name}".encode()).digest()
    return np.random.default_rng([int(seed), *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """10 log10(P_signal / P_noise): how the mix's SNR is defined (and measured in tests)."""
    return 10.0 * np.log10(_power(signal) / max(_power(noise), 1e-20))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr: float, offset: int = 0) -> np.ndarray:
    """`signal` + `noise` (cropped at `offset`, looped when shorter) scaled to `snr` dB.

    A silent clip is returned unchanged: it has no speech to set the noise level against. When
    the mix would clip, the whole mix is scaled down, which keeps the SNR exact.
    """
    signal = np.asarray(signal, dtype=np.float32)
    if signal.size == 0 or _power(signal) == 0.0:
        return signal.copy()
    noise = np.asarray(noise, dtype=np.float32)
    if noise.size == 0 or _power(noise) == 0.0:
        raise ValueError("the noise recording is silent; remove it from the noise folder")
    segment = np.take(noise, np.arange(offset, offset + signal.size), mode="wrap")
    gain = np.sqrt(_power(signal) / (_power(segment) * 10.0 ** (snr / 10.0)))
    mixed = signal + gain * segment
    peak = float(np.abs(mixed).max())
    if peak > 1.0:
        mixed /= peak
    return mixed.astype(np.float32)


def blur_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Down-sample every frame by `factor` (area average) and up-sample it back (bilinear), as a
    low-bandwidth stream does; `factor` 1 returns `frames` itself."""
    if factor < 1:
        raise ValueError(f"the down-sampling factor must be >= 1, got {factor}")
    if factor == 1:
        return frames
    height, width = frames.shape[1:3]
    small = (max(1, width // factor), max(1, height // factor))
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        low = Image.fromarray(frame).resize(small, Image.BOX)
        out[i] = np.asarray(low.resize((width, height), Image.BILINEAR))
    return out


def babble(waveforms: list[np.ndarray], *, seed: int, tracks: int = 8, talkers: int = 4,
           seconds: float = 4.0, sample_rate: int = 16000) -> list[np.ndarray]:
    """`tracks` babble recordings, each `talkers` of `waveforms` at equal level talking at once.

    Each talker is looped to the track's length from a random start; every track has unit RMS
    (the level is set per clip by the SNR anyway)."""
    voices = [np.asarray(w, np.float32) for w in waveforms if w is not None and _power(np.asarray(w)) > 0]
    if len(voices) < 2:
        raise ValueError(f"babble needs at least 2 non-silent clips, got {len(voices)}; give a noise "
                         f"folder of .wav files instead")
    talkers = min(talkers, len(voices))
    rng = np.random.default_rng([int(seed), 0xBAB])
    length = int(round(seconds * sample_rate))
    out = []
    for _ in range(tracks):
        track = np.zeros(length, np.float64)
        for k in rng.choice(len(voices), size=talkers, replace=False):
            voice = voices[int(k)]
            start = int(rng.integers(voice.size))
            track += np.take(voice, np.arange(start, start + length), mode="wrap") / np.sqrt(_power(voice))
        out.append((track / np.sqrt(_power(track))).astype(np.float32))
    return out


@dataclass(frozen=True, eq=False)  # arrays inside: compare by identity
class NoiseBank:
    """The noise recordings a corruption draws from (16 kHz float32 mono), and where they came from."""

    tracks: tuple[np.ndarray, ...]
    source: str = ""              # e.g. "folder /data/musan/speech (426 files)" or "babble of 24 clips"

    def __post_init__(self) -> None:
        if not self.tracks:
            raise ValueError(f"noise bank {self.source!r} is empty; give at least one noise recording")

    @classmethod
    def from_folder(cls, folder: str | Path, sample_rate: int = 16000) -> "NoiseBank":
        """Every audio file under `folder` (e.g. MUSAN's speech/ subset), decoded to mono."""
        from mer_ray.corpus.media import MediaError, decode_clip

        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"noise folder {folder} does not exist; give a folder of noise .wav files "
                             f"(seed 003 uses MUSAN speech) or leave it out to use babble from the corpus")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise ValueError(f"noise folder {folder} holds no audio file ({', '.join(AUDIO_EXTENSIONS)}); "
                             f"give a folder of noise recordings or leave it out to use babble")
        tracks = []
        for path in files:
            try:
                audio = decode_clip(None, path, sample_rate=sample_rate, want=("audio",)).audio
            except MediaError as err:
                raise ValueError(f"noise file {path} is unusable ({err}); remove it from {folder}") from None
            if audio is None or _power(audio) == 0.0:
                raise ValueError(f"noise file {path} is silent; remove it from {folder}")
            tracks.append(audio)
        return cls(tuple(tracks), f"folder {folder.resolve()} ({len(files)} files)")

    @classmethod
    def babble_from_clips(cls, paths: list[str | Path], *, seed: int, clips: int = 24,
                          sample_rate: int = 16000) -> "NoiseBank":
        """Babble from the audio of up to `clips` of `paths` (picked by `seed`)."""
        from mer_ray.corpus.media import MediaError, decode_clip

        paths = sorted(str(p) for p in paths)
        rng = np.random.default_rng([int(seed), 0xC11])
        picked = [paths[i] for i in sorted(rng.permutation(len(paths))[:clips])]
        waveforms = []
        for path in picked:
            try:
                waveforms.append(decode_clip(path, sample_rate=sample_rate, want=("audio",)).audio)
            except MediaError:
                continue  # a broken clip is quarantined at extraction; babble just needs others
        # the clips' names go into the source (and so into Corruption.digest): another corpus
        # gives other babble, and features made with it must not be mistaken for these
        names = hashlib.sha1("\n".join(Path(p).name for p in picked).encode()).hexdigest()[:6]
        return cls(tuple(babble(waveforms, seed=seed, sample_rate=sample_rate)),
                   f"babble of {len(picked)} corpus clips ({names}, seed {seed})")


@dataclass(frozen=True)
class Draw:
    """What one clip gets: the SNR, the down-sampling factor and where its noise comes from."""

    snr_db: float
    factor: int
    track: int
    offset: int


@dataclass(frozen=True, eq=False)
class Corruption:
    """Seed 003's MER-NOISE corruption with a fixed seed: `apply(name, frames, audio)`."""

    noise: NoiseBank
    seed: int = 0
    snr_range: tuple[float, float] = (5.0, 10.0)
    factors: tuple[int, ...] = (1, 2, 4)
    _lengths: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        low, high = self.snr_range
        if not low <= high:
            raise ValueError(f"snr_range must be (low, high) with low <= high, got {self.snr_range}")
        if not self.factors or min(self.factors) < 1:
            raise ValueError(f"factors must be integers >= 1, got {self.factors}")
        object.__setattr__(self, "_lengths", tuple(t.size for t in self.noise.tracks))

    def draw(self, name: str) -> Draw:
        rng = clip_rng(self.seed, name, "mer-noise")
        snr = float(rng.uniform(*self.snr_range))
        factor = int(self.factors[int(rng.integers(len(self.factors)))])
        track = int(rng.integers(len(self._lengths)))
        return Draw(snr, factor, track, int(rng.integers(self._lengths[track])))

    def apply(self, name: str, frames: np.ndarray | None, audio: np.ndarray | None
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The corrupted (frames, audio); a stream the clip lacks stays None."""
        draw = self.draw(name)
        if frames is not None:
            frames = blur_frames(frames, draw.factor)
        if audio is not None:
            audio = mix_at_snr(audio, self.noise.tracks[draw.track], draw.snr_db, draw.offset)
        return frames, audio

    def digest(self) -> str:
        """Names the recipe (seed, ranges, noise source), e.g. in a feature stream's name, so
        features of another corruption are never mistaken for these."""
        text = repr((self.seed, self.snr_range, self.factors, self.noise.source, self._lengths))
        return hashlib.sha1(text.encode()).hexdigest()[:8]


# ------------------------------------------------------------------------ a noisy corpus copy


def _read_whole_clip(path: Path, sample_rate: int):
    """Every frame (uint8 [T, H, W, 3]) and the frame rate of a video, and its audio; frames are
    None for an audio-only file. The copy keeps every frame, not the 16 that extraction samples."""
    import av

    from mer_ray.corpus.media import decode_clip

    frames, rate = None, None
    with av.open(str(path)) as container:
        if container.streams.video:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            frames = np.stack(decoded) if decoded else None
    audio = decode_clip(path, sample_rate=sample_rate, want=("audio",)).audio
    return frames, rate, audio


def corrupt_file(name: str, source: str | Path, target: str | Path, corruption: Corruption, *,
                 sample_rate: int = 16000, video_codec: str = "mpeg4") -> str:
    """Write the corrupted copy of one clip file to `target` (.mp4); '' or the problem."""
    from mer_ray.corpus.media import MediaError, write_clip

    try:
        frames, rate, audio = _read_whole_clip(Path(source), sample_rate)
    except (MediaError, OSError, ValueError) as err:
        return f"{name}: {source} could not be decoded ({err}); copied unchanged"
    except Exception as err:  # av's own errors: one bad clip must not end the copy
        return f"{name}: {source} could not be decoded ({type(err).__name__}: {err}); copied unchanged"
    if frames is None and audio is None:
        return f"{name}: {source} has no video or audio stream; copied unchanged"
    frames, audio = corruption.apply(name, frames, audio)
    write_clip(target, frames, audio, fps=rate or 25, sample_rate=sample_rate, video_codec=video_codec)
    return ""


def _corrupt_chunk(jobs: list[tuple[str, str, str]], corruption: Corruption) -> list[str]:
    """Worker task: corrupt a chunk of (name, source, target); the problems found."""
    import shutil

    problems = []
    for name, source, target in jobs:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        problem = corrupt_file(name, source, target, corruption)
        if problem:  # kept as it is, so the copy's tables still find the clip (and quarantine it)
            shutil.copy2(source, Path(target).with_suffix(Path(source).suffix))
            problems.append(problem)
    return problems


def make_noisy_corpus(source: str | Path, target: str | Path, *, seed: int = 0,
                      noise_dir: str | Path | None = None, splits: tuple[str, ...] | None = None,
                      workers: int | None = None, overwrite: bool = False) -> Path:
    """A MER-NOISE copy of the corpus folder `source` in `target`: the same layout, the same file
    and clip names (so labels, transcripts and truth carry over), every clip of `splits` (all
    when None) corrupted, the others and every table copied as they are.

    Noise: the audio files of `noise_dir` (seed 003: MUSAN speech), else babble made from the
    corpus's own clips. Deterministic for a given `seed`. Written to a temporary sibling folder
    that is renamed when complete, so an interrupted copy leaves nothing half done.
    """
    import json
    import multiprocessing
    import os
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    from mer_ray.corpus.manifest import read_corpus

    source, target = Path(source).resolve(), Path(target).resolve()
    if not source.is_dir():
        raise ValueError(f"{source}: give a corpus folder (MER 2023 / 2024 / 2025 layout); a manifest "
                         f"CSV points at files anywhere, so it has no layout to copy")
    if target == source or source in target.parents:
        raise ValueError(f"{target}: the noisy copy must be outside the source corpus {source}")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pick another folder or pass "
                              f"overwrite=True (--overwrite) to replace it")
    manifest = read_corpus(source)
    media = {}
    for rec in manifest.itertuples(index=False):
        for path in (rec.video, rec.audio):
            if isinstance(path, str):
                media[Path(path).resolve()] = rec
    wanted = manifest if splits is None else manifest[manifest["split"].isin(splits)]
    if splits is not None and wanted.empty:
        raise ValueError(f"{source}: no clip in split(s) {list(splits)}; the corpus has "
                         f"{sorted(manifest['split'].unique())}")
    noise = (NoiseBank.from_folder(noise_dir) if noise_dir is not None
             else NoiseBank.babble_from_clips([v for v in manifest["video"] if isinstance(v, str)], seed=seed))
    corruption = Corruption(noise, seed=seed)

    staging = target.parent / f".{target.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    corrupt_names = set(wanted["name"])
    jobs = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or relative.parts[0] in ("features",) or any(p.startswith(".") for p in relative.parts):
            continue  # features of the clean clips would be wrong for the noisy ones
        rec = media.get(path.resolve())
        out = staging / relative
        if rec is not None and rec.name in corrupt_names:
            jobs.append((rec.name, str(path), str(out.with_suffix(".mp4"))))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    if workers == 1 or len(jobs) < 16:
        problems = _corrupt_chunk(jobs, corruption)
    else:
        chunks = [jobs[i :: workers * 4] for i in range(workers * 4)]
        # spawn, not fork: the caller may be a Ray driver with threads running
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            problems = [p for part in pool.map(_corrupt_chunk, chunks, [corruption] * len(chunks)) for p in part]
    meta = dict(source=str(source), seed=seed, noise=noise.source, snr_db=list(corruption.snr_range),
                factors=list(corruption.factors), corrupted=len(jobs) - len(problems), problems=problems)
    (staging / "noise.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    for problem in problems:
        print(problem)
    print(f"noisy corpus: {len(jobs) - len(problems)} clips corrupted ({noise.source}, SNR "
          f"{corruption.snr_range[0]:g}-{corruption.snr_range[1]:g} dB, r in {list(corruption.factors)}), "
          f"{len(problems)} copied unchanged, written to {target}")
    return target

