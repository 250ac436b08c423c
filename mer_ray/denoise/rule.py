"""Seed 004's rule for keeping or replacing a clip's audio after speech separation (pure functions).

Seed 004, section 2.4.2 (Speech Source Separation Denoise):

    "The workflow commences by subjecting the noisy audio to noise-robust ASR model to obtain a
    template text, designated as Text_temp. Subsequently, the noisy audio is processed through
    MossFormer2, yielding two separated audios. Each of the audios is then passed through the
    ASR model above to get transcripts Text_id0 and Text_id1. A comparative analysis ensues,
    calculating the similarity between Text_id0 and Text_temp against Text_temp, quantified as
    Sim_id0 and Sim_id1, respectively. If the absolute difference |Sim_id0 - Sim_id1| exceeds
    0.1, the audio corresponding to the higher similarity score is selected; otherwise, the
    original audio is the chosen one. This strategy ensures a reduction in audio degradation
    after denoised."

So the template is the ASR transcript of the *noisy original* (not the corpus transcript), each
separated track's transcript is compared with it, and the two similarities are compared with
each other: a clear winner (difference > 0.1, strictly) replaces the audio, a near tie keeps the
original. The paper does not say how similarity is measured; here it is one minus the normalised
character edit distance (1 - CER against the template): MER transcripts are Chinese, which has no
spaces to split words on, and ASR systems differ in punctuation, so both are dropped first.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence

__all__ = ["THRESHOLD", "choose_track", "decide", "edit_distance", "normalise_transcript",
           "transcript_similarity"]

THRESHOLD = 0.1   # seed 004: "exceeds 0.1"
# Similarities are ratios of small integers: 0.4 - 0.3 is 0.10000000000000003 in floats, which
# must not count as exceeding 0.1.
_EPS = 1e-9


def normalise_transcript(text: str | None) -> str:
    """What the comparison sees: NFKC (full-width → half-width), case-folded, letters and digits
    only (punctuation and spaces differ between ASR systems and carry no words)."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def transcript_similarity(text: str | None, template: str | None) -> float:
    """1 - edit distance / length of the longer normalised text, in [0, 1]; symmetric.

    Two empty transcripts are identical (1.0): silence heard as silence. One empty and one not
    share nothing (0.0)."""
    a, b = normalise_transcript(text), normalise_transcript(template)
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return 1.0 - edit_distance(a, b) / longest


def choose_track(similarities: Sequence[float], threshold: float = THRESHOLD) -> int | None:
    """Index of the separated track to use, or None to keep the original audio.

    With two tracks (the paper's case) this is: |Sim_id0 - Sim_id1| > threshold → the track with
    the higher similarity, else the original. A separator giving more tracks is held to the same
    bar between its best and second-best track. A negative threshold always takes the best
    track (ties → the lower index) and a threshold >= 1 never does: the ablations "always
    separate" and "never separate".
    """
    sims = [float(s) for s in similarities]
    if len(sims) < 2:
        raise ValueError(f"seed 004's rule compares the transcripts of at least two separated tracks; "
                         f"got {len(sims)} similarity value(s). Use a separator with num_sources >= 2")
    order = sorted(range(len(sims)), key=lambda i: -sims[i])   # stable: ties keep the lower index
    best, runner_up = order[0], order[1]
    return best if sims[best] - sims[runner_up] > threshold + _EPS else None


def decide(template: str | None, transcripts: Sequence[str | None],
           threshold: float = THRESHOLD) -> tuple[int | None, list[float]]:
    """The rule on transcripts: (chosen track or None for the original, each track's similarity
    to the template)."""
    similarities = [transcript_similarity(text, template) for text in transcripts]
    return choose_track(similarities, threshold), similarities
