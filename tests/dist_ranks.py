"""Running a function on several gloo ranks (``torch.multiprocessing`` spawn), for the distributed tests."""
import os
import tempfile

import torch.distributed as dist
import torch.multiprocessing as mp


def store_path(tmp_path) -> str:
    """A fresh path for a FileStore (the file must not exist yet)."""
    fd, path = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    os.unlink(path)
    return path


def _rank(rank, fn, world, path, args):
    dist.init_process_group("gloo", store=dist.FileStore(path, world), rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's teardown: there, about one worker in 30 (torch 2.14.1,
    # gloo) aborted with "terminate called without an active exception" and no Python frame,
    # after the results were written.
    os._exit(0)


def spawn(fn, world: int, tmp_path, *args) -> None:
    """Run ``fn(rank, world, *args)`` on ``world`` processes in one gloo group; fn is a module-level
    function (pickled by name). A rank that raises makes this raise (and the others be stopped)."""
    mp.spawn(_rank, args=(fn, world, store_path(tmp_path), args), nprocs=world, join=True)
