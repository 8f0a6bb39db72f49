"""NACA (and SBP) on ``torch.distributed``: data parallel (``DistributedLearner``, ``data_parallel``) and
forward-only pipeline parallel (``PipelineLearner``, ``pipeline``), which compose
(``PipelineLearner(..., data_parallel=D)``)."""
from .data_parallel import RANK_SEED_STRIDE, DistributedLearner, all_reduce_buckets, broadcast_tensors, buckets
from .partition import balanced_split
from .pipeline import PipelineError, PipelineLearner

__all__ = ["DistributedLearner", "PipelineLearner", "PipelineError", "all_reduce_buckets", "balanced_split",
           "broadcast_tensors", "buckets", "RANK_SEED_STRIDE"]
