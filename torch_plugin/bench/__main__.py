"""The command line of the benchmarks (``python -m torch_plugin.bench --help``); the sections are
described in ``torch_plugin/bench/__init__.py``."""
from __future__ import annotations

import argparse
import os
import sys

import torch

from . import SECTIONS, report, run
from . import __doc__ as _package_doc


def main(argv=None) -> int:
    """Parses ``argv`` (default ``sys.argv[1:]``), runs the sections, writes DIR/benchmarks.{md,json}
    after each one and prints the Markdown; returns 0 (usage errors exit 2)."""
    p = argparse.ArgumentParser(prog="python -m torch_plugin.bench", description=_package_doc.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats (CI smoke test)")
    p.add_argument("--out", default="out/bench", help="folder for benchmarks.md and benchmarks.json")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    p.add_argument("--repeats", type=int, default=None, help="timed runs per figure (median)")
    p.add_argument("--inner", type=int, default=None,
                   help="CUDA: back-to-back calls per timed run (default 10; 1 = single-call latency)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before each figure")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU intra-op threads)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    command = "python -m torch_plugin.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    os.makedirs(args.out, exist_ok=True)
    res = run(args.device, args.quick, sections, args.repeats, args.warmup, command.strip(), args.inner,
              on_section=lambda r: report.write(r, args.out))
    sys.stdout.write(report.to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
