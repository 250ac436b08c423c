"""Which streams the learners see: the defaults adapt to the streams a run has, and a learner
asking for a stream the run lacks is refused before any work, naming the streams there are.

The default learners (M1..M4, `DEFAULT_LEARNERS`) are written over streams named after their
modality (`audio`, `text`, `video`). A run whose streams are named otherwise (MERTools folders:
`chinese-hubert-large`, `clip-vit-large-patch14`, `Baichuan-13B-Base`, ...) keeps the same four
fusions and modality combinations (seed 004: A+T+V, A+V, T+V, A+T), each over every stream of
those modalities; a combination with no such stream takes all streams, so there are always four
voters with different fusions.
"""
from __future__ import annotations

import dataclasses

from mer_ray.config import DEFAULT_LEARNERS, LearnerSpec

MODALITY_OF_DEFAULT_STREAM = {"audio": "audio", "text": "text", "video": "video"}


def default_learners(modalities: dict[str, str]) -> tuple[LearnerSpec, ...]:
    """M1..M4 over `modalities` ({stream: 'audio' | 'video' | 'text' | 'audio+video' ...})."""
    if all(s in modalities for spec in DEFAULT_LEARNERS for s in spec.streams):
        return DEFAULT_LEARNERS
    learners = []
    for spec in DEFAULT_LEARNERS:
        wanted = {MODALITY_OF_DEFAULT_STREAM[s] for s in spec.streams}
        streams = tuple(s for s in sorted(modalities) if wanted & set(modalities[s].split("+")))
        learners.append(dataclasses.replace(spec, streams=streams or tuple(sorted(modalities))))
    return tuple(learners)


def check_learner_streams(learners, streams) -> None:
    """Every learner's streams must be among the run's (`extract.streams`)."""
    have = sorted(streams)
    for spec in learners:
        missing = [s for s in spec.streams if s not in streams]
        if missing:
            raise ValueError(
                f"learner {spec.name} uses stream(s) {', '.join(map(repr, missing))}, which this run does not "
                f"have; its streams are: {', '.join(have) or 'none'}. Name those in the learners' `streams` "
                f"(--learners FILE or `learners:` in --config), or add the stream (--stream NAME=SPEC)")
