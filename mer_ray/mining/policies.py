"""Selection policies: which unlabeled clips become pseudo-labeled training data.

A policy is a chain: one *selector* proposes clips, then *filters* narrow the proposal, e.g.
`("vote", "minority", "cap")`. Each link is one decorated factory taking the MiningConfig, so
adding a policy never touches the mining loop (USB / semilearn-style hooks).

Every link sees the learners' probabilities on the pool, `probs [L, N, C]`, and a
`PolicyContext` (the labeled dev clips' probabilities, for thresholds learned from data).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from mer_ray.config import MiningConfig
from mer_ray.labels import label_index
from mer_ray.registry import Registry


@dataclass
class Selection:
    selected: np.ndarray     # bool [N]
    labels: np.ndarray       # int64 [N]: the agreed (pseudo) label of every clip
    agree: np.ndarray        # int64 [N]: how many learners gave that label
    confidence: np.ndarray   # float32 [N]: mean probability of the agreeing learners


@dataclass
class PolicyContext:
    dev_probs: np.ndarray    # [L, D, C] the learners on the labeled dev clips
    dev_labels: np.ndarray   # [D]
    pool_size: int           # the pool at the start of the run (caps are shares of it)


Link = Callable[[np.ndarray, PolicyContext, Selection], Selection]
POLICIES: Registry[Link] = Registry("selection policy")


def majority(probs: np.ndarray) -> Selection:
    """The most voted label per clip; ties go to the label with the larger summed probability.
    Nothing is selected yet: that is the policies' job."""
    n_learners, n_clips, n_classes = probs.shape
    votes = probs.argmax(-1)                                                  # [L, N]
    counts = np.stack([(votes == c).sum(0) for c in range(n_classes)], -1)   # [N, C]
    # counts dominate; the summed probability (< L + 1) only breaks ties between equal counts
    labels = (counts * (n_learners + 1) + probs.sum(0)).argmax(-1)
    agree = counts[np.arange(n_clips), labels]
    picked = probs[:, np.arange(n_clips), labels] * (votes == labels[None, :])
    confidence = picked.sum(0) / np.maximum(agree, 1)
    return Selection(np.zeros(n_clips, bool), labels.astype(np.int64), agree.astype(np.int64),
                     confidence.astype(np.float32))


# -- selectors -------------------------------------------------------------------------------
@POLICIES.register("vote")
def vote(cfg: MiningConfig) -> Link:
    """Seed 004: keep a clip when at least `agree` learners predict the same label
    (and, optionally, the agreeing learners' mean confidence is >= `min_confidence`)."""
    def select(probs, ctx, sel):
        if cfg.agree > probs.shape[0]:
            raise ValueError(f"vote needs {cfg.agree} agreeing learners but only {probs.shape[0]} exist")
        return replace(sel, selected=(sel.agree >= cfg.agree) & (sel.confidence >= cfg.min_confidence))
    return select


def _mean_confidence(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label and max softmax of the learners' averaged probabilities (one learner: its own)."""
    mean = probs.mean(0)
    return mean.argmax(-1), mean.max(-1)


@POLICIES.register("confidence")
def confidence(cfg: MiningConfig) -> Link:
    """Seed 000: keep a clip when the (averaged) softmax confidence is >= the threshold (0.8)."""
    def select(probs, ctx, sel):
        labels, conf = _mean_confidence(probs)
        return replace(sel, labels=labels.astype(np.int64), confidence=conf.astype(np.float32),
                       selected=conf >= cfg.confidence_threshold)
    return select


@POLICIES.register("class-quantile")
def class_quantile(cfg: MiningConfig) -> Link:
    """Seed 003, Algorithm 1: a threshold per class from the confidences of correctly predicted
    labeled (dev) clips of that class; a pool clip is kept when its confidence exceeds the
    threshold of its predicted class. `quantile_eta` is the share of those correct
    confidences that lie above the threshold (the "highest eta portion")."""
    def select(probs, ctx, sel):
        dev_pred, dev_conf = _mean_confidence(ctx.dev_probs)
        n_classes = probs.shape[-1]
        thresholds = np.full(n_classes, np.inf)   # a class never predicted right mines nothing
        for c in range(n_classes):
            correct = dev_conf[(ctx.dev_labels == c) & (dev_pred == c)]
            if len(correct):
                thresholds[c] = np.quantile(correct, 1.0 - cfg.quantile_eta)
        labels, conf = _mean_confidence(probs)
        return replace(sel, labels=labels.astype(np.int64), confidence=conf.astype(np.float32),
                       selected=conf > thresholds[labels])
    return select


# -- filters ---------------------------------------------------------------------------------
@POLICIES.register("minority")
def minority(cfg: MiningConfig) -> Link:
    """Seed 000's weak reinforcement: only mine the named (rare) classes."""
    allowed = np.array(sorted(label_index(c, where="mining.minority_classes") for c in cfg.minority_classes))

    def select(probs, ctx, sel):
        return replace(sel, selected=sel.selected & np.isin(sel.labels, allowed))
    return select


@POLICIES.register("cap")
def cap(cfg: MiningConfig) -> Link:
    """At most `max_share_per_round` of the pool per round, and `max_share_per_class` per class,
    keeping the most confident clips: one majority class cannot flood the mined set."""
    def select(probs, ctx, sel):
        keep = np.zeros_like(sel.selected)
        per_class = int(np.floor(cfg.max_share_per_class * ctx.pool_size))
        for c in np.unique(sel.labels[sel.selected]):
            members = np.flatnonzero(sel.selected & (sel.labels == c))
            keep[members[np.argsort(-sel.confidence[members], kind="stable")[:per_class]]] = True
        total = int(np.floor(cfg.max_share_per_round * ctx.pool_size))
        members = np.flatnonzero(keep)
        if len(members) > total:
            keep[:] = False
            keep[members[np.argsort(-sel.confidence[members], kind="stable")[:total]]] = True
        return replace(sel, selected=keep)
    return select


def create_policy(cfg: MiningConfig) -> Callable[[np.ndarray, PolicyContext], Selection]:
    """The chain cfg.policy (selector first, then filters); a cap is added when one is set."""
    names: Sequence[str] = (cfg.policy,) if isinstance(cfg.policy, str) else tuple(cfg.policy)
    if (cfg.max_share_per_round < 1 or cfg.max_share_per_class < 1) and "cap" not in names:
        names = (*names, "cap")
    links = [POLICIES.create(name, cfg=cfg) for name in names]

    def run(probs: np.ndarray, ctx: PolicyContext) -> Selection:
        sel = majority(probs)
        for link in links:
            sel = link(probs, ctx, sel)
        return sel
    return run


def split_evenly(rows: np.ndarray, labels: np.ndarray, n_learners: int, seed: int) -> list[np.ndarray]:
    """Seed 004: divide the mined set evenly and disjointly across the learners.

    Class-stratified: each class is shuffled and dealt round-robin, the dealer carrying on from
    class to class, so every learner gets the same class mix and totals differ by at most one.
    Returns positions into `rows`/`labels` for each learner.
    """
    rng = np.random.default_rng(seed)
    shares: list[list[int]] = [[] for _ in range(n_learners)]
    dealer = 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(rows[members], kind="stable")]   # independent of input order
        for position in rng.permutation(members):
            shares[dealer].append(position)
            dealer = (dealer + 1) % n_learners
    return [np.array(sorted(s), dtype=np.int64) for s in shares]
