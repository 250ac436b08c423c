"""Selection policies: which unlabeled clips become pseudo-labeled training data.

A policy is a chain: one *selector* proposes clips, then *filters* narrow the proposal, e.g.
`("vote", "class-quota")`. Each link is one decorated factory taking the MiningConfig and, when
it declares one (`@POLICIES.register(name, params=SomeDataclass)`), its own parameters, read
from `mining.options[name]` (`mining: {options: {vote: {agree: 4}}}`): a link's parameters
live with it, and adding a policy never touches the mining loop or MiningConfig (USB /
semilearn-style hooks).

Every link sees the learners' probabilities on the candidate clips, `probs [L, N, C]`, and a
`PolicyContext` (labeled clips' held-out probabilities, for thresholds learned from data; the
labeled class prior; the round).

Why class-aware links exist: measured on real data (issue 13), 95-100 %-correct pseudo-labels
still lowered test WAF when they were all neutral / angry / happy — the mined set's class mix,
not only its noise, decides whether mining helps. `class-quota` deals the mined set out by the
labeled class prior (class-balanced self-training); `class-adaptive` lowers the threshold of
classes the learners are unsure of (FreeMatch's self-adaptive thresholds).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from mer_ray.config import MiningConfig
from mer_ray.labels import label_index
from mer_ray.registry import Registry
from mer_ray.splits import deal


@dataclass
class Selection:
    selected: np.ndarray     # bool [N]
    labels: np.ndarray       # int64 [N]: the agreed (pseudo) label of every clip
    agree: np.ndarray        # int64 [N]: how many learners gave that label
    confidence: np.ndarray   # float32 [N]: mean probability of the agreeing learners


@dataclass
class PolicyContext:
    dev_probs: np.ndarray    # [L, D, C] the learners on labeled clips they did not fit on
    dev_labels: np.ndarray   # [D]
    pool_size: int           # the pool at the start of the run (caps and quotas are shares of it)
    round: int = 1           # the round the mined clips will train (1 = the first vote)
    labeled_prior: np.ndarray | None = None   # [C] class shares of the labeled training clips
    cumulative: bool = False  # the selection is the whole mined set (revisited), not an addition


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
@dataclass(frozen=True)
class Vote:
    """Parameters of `vote` (`mining.options: {vote: {...}}`)."""
    agree: int = 3                # keep a clip when >= `agree` learners give the same label
    min_confidence: float = 0.0   # and the agreeing learners' mean softmax is at least this


@POLICIES.register("vote", params=Vote)
def vote(cfg: MiningConfig, params: Vote) -> Link:
    """Seed 004: keep a clip when at least `agree` learners predict the same label
    (and, optionally, the agreeing learners' mean confidence is >= `min_confidence`)."""
    def select(probs, ctx, sel):
        if params.agree > probs.shape[0]:
            raise ValueError(f"vote needs {params.agree} agreeing learners but only {probs.shape[0]} exist "
                             f"(set mining.options.vote.agree)")
        return replace(sel, selected=(sel.agree >= params.agree) & (sel.confidence >= params.min_confidence))
    return select


def _mean_confidence(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label and max softmax of the learners' averaged probabilities (one learner: its own)."""
    mean = probs.mean(0)
    return mean.argmax(-1), mean.max(-1)


@dataclass(frozen=True)
class Confidence:
    """Parameters of `confidence` (`mining.options: {confidence: {...}}`)."""
    threshold: float = 0.8   # seed 000


@POLICIES.register("confidence", params=Confidence)
def confidence(cfg: MiningConfig, params: Confidence) -> Link:
    """Seed 000: keep a clip when the (averaged) softmax confidence is >= the threshold (0.8)."""
    def select(probs, ctx, sel):
        labels, conf = _mean_confidence(probs)
        return replace(sel, labels=labels.astype(np.int64), confidence=conf.astype(np.float32),
                       selected=conf >= params.threshold)
    return select


@dataclass(frozen=True)
class ClassQuantile:
    """Parameters of `class-quantile` (`mining.options: {class-quantile: {...}}`)."""
    eta: float = 0.5   # seed 003, Algorithm 1: the share of each class's correct confidences kept


@POLICIES.register("class-quantile", params=ClassQuantile)
def class_quantile(cfg: MiningConfig, params: ClassQuantile) -> Link:
    """Seed 003, Algorithm 1: a threshold per class from the confidences of correctly predicted
    labeled (dev) clips of that class; a pool clip is kept when its confidence exceeds the
    threshold of its predicted class. `eta` is the share of those correct confidences that lie
    above the threshold (the "highest eta portion")."""
    def select(probs, ctx, sel):
        dev_pred, dev_conf = _mean_confidence(ctx.dev_probs)
        n_classes = probs.shape[-1]
        thresholds = np.full(n_classes, np.inf)   # a class never predicted right mines nothing
        for c in range(n_classes):
            correct = dev_conf[(ctx.dev_labels == c) & (dev_pred == c)]
            if len(correct):
                thresholds[c] = np.quantile(correct, 1.0 - params.eta)
        labels, conf = _mean_confidence(probs)
        return replace(sel, labels=labels.astype(np.int64), confidence=conf.astype(np.float32),
                       selected=conf > thresholds[labels])
    return select


# -- filters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Minority:
    """Parameters of `minority` (`mining.options: {minority: {...}}`)."""
    classes: tuple[str, ...] = ("surprise", "worried", "sad")   # seed 000's rare classes


@POLICIES.register("minority", params=Minority)
def minority(cfg: MiningConfig, params: Minority) -> Link:
    """Seed 000's weak reinforcement: only mine the named (rare) classes."""
    allowed = np.array(sorted(label_index(c, where="mining.options.minority.classes") for c in params.classes))

    def select(probs, ctx, sel):
        return replace(sel, selected=sel.selected & np.isin(sel.labels, allowed))
    return select


@dataclass(frozen=True)
class Cap:
    """Parameters of `cap` (`mining.options: {cap: {...}}`)."""
    max_share_per_round: float = 1.0   # of the pool, mined per round at most
    max_share_per_class: float = 1.0   # of the pool, mined per class per round at most


@POLICIES.register("cap", params=Cap)
def cap(cfg: MiningConfig, params: Cap) -> Link:
    """At most `max_share_per_round` of the pool per round, and `max_share_per_class` per class,
    keeping the most confident clips: one majority class cannot flood the mined set."""
    def select(probs, ctx, sel):
        keep = np.zeros_like(sel.selected)
        per_class = int(np.floor(params.max_share_per_class * ctx.pool_size))
        for c in np.unique(sel.labels[sel.selected]):
            members = np.flatnonzero(sel.selected & (sel.labels == c))
            keep[members[np.argsort(-sel.confidence[members], kind="stable")[:per_class]]] = True
        total = int(np.floor(params.max_share_per_round * ctx.pool_size))
        members = np.flatnonzero(keep)
        if len(members) > total:
            keep[:] = False
            keep[members[np.argsort(-sel.confidence[members], kind="stable")[:total]]] = True
        return replace(sel, selected=keep)
    return select


@dataclass(frozen=True)
class ClassQuota:
    """Parameters of `class-quota` (`mining.options: {class-quota: {...}}`)."""
    share_per_round: float = 0.25   # of the pool, per round; with revisiting: the mined set grows by it
    max_share: float = 1.0          # of the pool, at most, in all
    prior: str = "labeled"          # the class mix to deal out: "labeled" (the labeled clips') | "uniform"
    # a class whose quota the chain's proposal leaves short is topped up with the other clips
    # the learners label that class, most agreeing then most confident first (see class_quota)
    fill: bool = True


@POLICIES.register("class-quota", params=ClassQuota)
def class_quota(cfg: MiningConfig, params: ClassQuota) -> Link:
    """Class-balanced self-training: of the clips the chain so far proposes, keep per class at
    most quota_c = prior_c * budget, the clips with the most agreeing learners first, then the
    most confident. The budget is `share_per_round` of the pool per round — cumulative
    (round * share) when the mined set is revisited every round, since the selection is then
    the whole mined set — so one class cannot flood it, and a class the learners rarely
    predict is never filled with clips of another.

    `fill`: a class short of its quota is topped up from the clips the chain left out whose
    (plurality) label is that class — the proposed clips first, then by agreement, then by
    confidence. Without it a rare class the learners seldom agree on is starved: on the demo
    corpus the >= 3-of-4 vote proposed 0-2 `worried` clips a round against a quota of 26, so
    the mined set drifted to the majority classes round after round (issue 13)."""
    if not 0 < params.share_per_round <= 1 or not 0 < params.max_share <= 1:
        raise ValueError(f"class-quota: share_per_round and max_share must be in (0, 1], got {params}")
    if params.prior not in ("labeled", "uniform"):
        raise ValueError(f"class-quota: prior must be 'labeled' or 'uniform', got {params.prior!r}")

    def select(probs, ctx, sel):
        n_classes = probs.shape[-1]
        if params.prior == "uniform" or ctx.labeled_prior is None:
            prior = np.full(n_classes, 1.0 / n_classes)
        else:
            prior = np.asarray(ctx.labeled_prior, np.float64) / np.sum(ctx.labeled_prior)
        share = min(params.max_share, params.share_per_round * (ctx.round if ctx.cumulative else 1))
        quota = np.floor(prior * share * ctx.pool_size + 1e-9).astype(np.int64)
        keep = np.zeros_like(sel.selected)
        for c in range(n_classes):
            members = np.flatnonzero((sel.labels == c) & (sel.selected | params.fill))
            order = np.lexsort((members, -sel.confidence[members], -sel.agree[members], ~sel.selected[members]))
            keep[members[order[:quota[c]]]] = True
        return replace(sel, selected=keep)
    return select


@dataclass(frozen=True)
class ClassAdaptive:
    """Parameters of `class-adaptive` (`mining.options: {class-adaptive: {...}}`)."""
    tau: float | None = None   # global threshold; None: the pool's mean confidence (FreeMatch)
    scale: float = 1.0         # multiplies every class threshold


@POLICIES.register("class-adaptive", params=ClassAdaptive)
def class_adaptive(cfg: MiningConfig, params: ClassAdaptive) -> Link:
    """FreeMatch's self-adaptive thresholds (Wang et al. 2023), estimated once per round on the
    candidates: tau_c = tau * p_c / max_c p_c, where p_c is the learners' mean probability of
    class c over the candidates and tau (by default) their mean confidence. Classes the
    learners are unsure of get lower thresholds, so they are not starved; keeps the clips the
    chain so far proposes whose confidence reaches their label's threshold."""
    def select(probs, ctx, sel):
        mean = probs.mean(0)                                   # [N, C]
        if not len(mean):
            return sel
        tau = float(mean.max(-1).mean()) if params.tau is None else params.tau
        p = mean.mean(0)
        thresholds = params.scale * tau * p / p.max()
        return replace(sel, selected=sel.selected & (sel.confidence >= thresholds[sel.labels]))
    return select


def policy_params(cfg: MiningConfig, name: str):
    """The parameters dataclass of policy `name`, filled from `cfg.options[name]` (None when the
    policy declares none)."""
    kind = POLICIES.meta(name).get("params")
    given = dict(cfg.options.get(name) or {})
    if kind is None:
        if given:
            raise ValueError(f"selection policy {name!r} takes no options, got {sorted(given)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(given) - set(fields)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for selection policy {name!r}; known: {sorted(fields)}")
    # YAML lists where the dataclass holds tuples (minority classes), so params stay hashable
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return kind(**given)


def _chain(cfg: MiningConfig) -> tuple[str, ...]:
    """The names of the policy chain, selector first (`policy: vote` or a list)."""
    return (cfg.policy,) if isinstance(cfg.policy, str) else tuple(cfg.policy)


def create_policy(cfg: MiningConfig) -> Callable[[np.ndarray, PolicyContext], Selection]:
    """The chain cfg.policy (selector first, then filters), each link with its own parameters
    from `cfg.options`."""
    names = _chain(cfg)
    unused = set(cfg.options) - set(names)
    if unused:
        raise ValueError(f"mining.options names {sorted(unused)}, which the policy chain {list(names)} does not use")
    links = [POLICIES.create(name, cfg=cfg, params=policy_params(cfg, name)) for name in names]

    def run(probs: np.ndarray, ctx: PolicyContext) -> Selection:
        sel = majority(probs)
        for link in links:
            sel = link(probs, ctx, sel)
        return sel
    return run


def check_roster(cfg: MiningConfig, n_learners: int) -> None:
    """A vote that needs more agreeing learners than the run has could never mine a clip: say
    so before round 0 trains, not when round 1 first votes."""
    if cfg.rounds == 0 or "vote" not in _chain(cfg):
        return
    agree = policy_params(cfg, "vote").agree
    if agree > n_learners:
        raise ValueError(f"mining.options.vote.agree is {agree} but the run has {n_learners} learner(s), so no "
                         f"clip could ever be mined; set mining.options.vote.agree to at most {n_learners}")


def assign_learners(rows: np.ndarray, labels: np.ndarray, n_learners: int, how: str, seed: int) -> np.ndarray:
    """The learner each mined clip trains: seed 004's even split (`how="even"`), or every
    learner (-1) with `how="all"`."""
    assigned = np.full(len(rows), -1, np.int64)
    if how == "all":
        return assigned
    if how != "even":
        raise ValueError(f"mining.split must be 'even' or 'all', got {how!r}")
    # seed 004: divide the mined set evenly and disjointly, every learner the same class mix;
    # keyed by row id, so the shares do not depend on the order the clips came in
    for learner, share in enumerate(deal(labels, n_learners, seed, keys=rows)):
        assigned[share] = learner
    return assigned
