"""NACA (and SBP) on ``torch.distributed``: data parallel (``DistributedLearner``, ``data_parallel``)."""
from .data_parallel import RANK_SEED_STRIDE, DistributedLearner, all_reduce_buckets, broadcast_tensors, buckets

__all__ = ["DistributedLearner", "all_reduce_buckets", "broadcast_tensors", "buckets", "RANK_SEED_STRIDE"]
