"""Fusion learners over named feature streams (seed 003 attention, seed 004 cross-modal
attention, seed 000 FBP, concat-MLP) and their multitask objective."""
from mer_ray.learners.fusions import (
    FUSIONS,
    FusionLearner,
    LearnerOutput,
    create_learner,
    fusion_options,
    multitask_loss,
)

__all__ = ["FUSIONS", "FusionLearner", "LearnerOutput", "create_learner", "fusion_options", "multitask_loss"]
