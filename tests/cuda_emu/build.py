"""Build this project's CUDA kernels as a CPU library, to test them without a GPU.

``cuda/*.cu`` is translated into C++ (``<<<grid, block>>>`` launches become calls of
``naca_emu::launch``, which runs every thread of the grid in turn; see naca_emu.h),
compiled with the device-independent half of the ops (csrc/update.cpp,
csrc/expectation.cpp) and the op schemas (csrc/ops.cpp) into one library that
registers every op under ``torch.ops.naca_emu`` for CPU tensors. The op wrappers are
the real ones, built with ``NACA_CUDA_EMU`` so they take their CUDA paths (float16 and
bfloat16 accepted, conv updates in one chunk).

What it checks and what it cannot: the kernels' arithmetic, indexing, grid-stride
loops, launch configurations (CUDA's grid and block limits), and, with
``NACA_EMU_SANITIZE=1`` under AddressSanitizer, every out-of-bounds access on the
host copy; threads run one at a time, so it sees no data race that needs two
threads at once (the test runs each grid in two orders instead), nothing about
device memory, streams, or the speed.

    python tests/cuda_emu/build.py      # build (or reuse), load, and print the library's path
    python -m pytest tests/test_cuda_emu.py
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Files whose text is translated: the kernels, and the C++ they need from csrc/.
KERNELS = sorted((ROOT / "cuda").glob("*.cu"))
HOST = [ROOT / "csrc" / n for n in ("ops.cpp", "update.cpp", "expectation.cpp")]
# Device features a serial emulation cannot honour.
UNSUPPORTED = ("__shared__", "__syncthreads", "__syncwarp", "__shfl", "atomic", "cooperative_groups")


def _match(text: str, at: int, pair: str) -> int:
    """Index of the bracket matching text[at]: forward from pair[0], backward from pair[1]."""
    step = 1 if text[at] == pair[0] else -1
    depth = 0
    for i in range(at, len(text) if step > 0 else -1, step):
        depth += (text[i] == pair[0]) - (text[i] == pair[1])
        if depth == 0:
            return i
    raise ValueError(f"unbalanced {pair} at offset {at}")


def _split_top(text: str) -> list[str]:
    """Split on commas outside (), <> and {}."""
    parts, depth, cur = [], 0, []
    for c in text:
        if c in "(<{[":
            depth += 1
        elif c in ")>}]":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur).strip())
    return parts


def translate_launches(text: str) -> tuple[str, int]:
    """`kernel<T><<<g, b, shmem, stream>>>(args)` -> `::naca_emu::launch(g, b, kernel<T>, args)`."""
    count = 0
    while (at := text.find("<<<")) >= 0:
        # The callee: an identifier (maybe qualified) with optional template arguments.
        i = at - 1
        while text[i].isspace():
            i -= 1
        if text[i] == ">":
            i = _match(text, i, "<>") - 1
        while text[i].isalnum() or text[i] in "_:":
            i -= 1
        callee_start = i + 1
        callee = re.sub(r"\s+", " ", text[callee_start:at]).strip()
        close = text.index(">>>", at)
        config = _split_top(text[at + 3:close])
        if not 2 <= len(config) <= 4:
            raise ValueError(f"launch of {callee}: expected <<<grid, block[, shmem[, stream]]>>>")
        if len(config) >= 3 and config[2] not in ("0", "0u"):
            raise ValueError(f"launch of {callee}: dynamic shared memory is not emulated")
        paren = text.index("(", close)
        if text[close + 3:paren].strip():
            raise ValueError(f"launch of {callee}: expected '(' after '>>>'")
        end = _match(text, paren, "()")
        args = text[paren + 1:end].strip()
        call = f"::naca_emu::launch({config[0]}, {config[1]}, {callee}{', ' + args if args else ''})"
        text = text[:callee_start] + call + text[end + 1:]
        count += 1
    return text, count


def translate(path: Path) -> str:
    """The emulation's C++ for one source file of this project."""
    text = path.read_text()
    if path.suffix == ".cu":
        code = re.sub(r"//.*|/\*.*?\*/", "", text, flags=re.S)
        bad = [w for w in UNSUPPORTED if w in code]
        if bad:
            raise ValueError(f"{path.name} uses {bad}: not emulated (see naca_emu.h)")
        text, n = translate_launches(text)
        if n == 0:
            raise ValueError(f"{path.name}: no kernel launch found")
    # Register every op under naca_emu; the CUDA kernels for CPU tensors.
    text = re.sub(r"TORCH_LIBRARY\(\s*naca\s*,", "TORCH_LIBRARY(naca_emu,", text)
    text = re.sub(r"TORCH_LIBRARY_IMPL\(\s*naca\s*,\s*CUDA\s*,", "TORCH_LIBRARY_IMPL(naca_emu, CPU,", text)
    if re.search(r"TORCH_LIBRARY_IMPL\(\s*naca\s*,\s*CPU\s*,", text):
        raise ValueError(f"{path.name} registers CPU kernels: not part of the emulation")
    text = re.sub(r"TORCH_LIBRARY_IMPL\(\s*naca\s*,", "TORCH_LIBRARY_IMPL(naca_emu,", text)
    # Quoted includes resolve against the original file's folder when the header is there;
    # the others (cuda/ includes csrc/'s headers) through the include path, as in the real build.
    text = re.sub(r'#include "([^"]+)"',
                  lambda m: f'#include "{(path.parent / m.group(1)).resolve()}"'
                  if (path.parent / m.group(1)).exists() else m.group(0), text)
    header = f'#include "{HERE / "naca_emu.h"}"\n#line 1 "{path}"\n'
    return header + text


def build(sanitize: bool | None = None, verbose: bool = False) -> str:
    """Translate, compile (ninja, cached in build-cuda-emu[-sanitize]/) and return the library's path.

    sanitize (default: env NACA_EMU_SANITIZE=1): build with -fsanitize=address,undefined; the
    process must then run with libasan preloaded (.ci/sanitize.sh does).
    """
    from torch.utils import cpp_extension

    if sanitize is None:
        sanitize = os.environ.get("NACA_EMU_SANITIZE") == "1"
    out = ROOT / ("build-cuda-emu-sanitize" if sanitize else "build-cuda-emu")
    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    sources = []
    for path in KERNELS + HOST:
        target = src / (path.stem + ("_cu" if path.suffix == ".cu" else "") + ".cpp")
        text = translate(path)
        if not target.exists() or target.read_text() != text:  # keep mtimes for ninja
            target.write_text(text)
        sources.append(str(target))
    sources.append(str(HERE / "emu_ops.cpp"))
    flags = ["-DNACA_CUDA_EMU", "-O1", "-w"]
    ldflags = []
    if sanitize:
        flags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
        ldflags += ["-fsanitize=address,undefined"]
    # The compiler runs without the preloaded sanitizer runtime of a sanitized test process.
    preload = os.environ.pop("LD_PRELOAD", None)
    try:
        return cpp_extension.load(
            name="naca_cuda_emu_sanitize" if sanitize else "naca_cuda_emu",
            sources=sources,
            extra_include_paths=[str(HERE / "shim"), str(ROOT / "csrc")],
            extra_cflags=flags,
            extra_ldflags=ldflags,
            build_directory=str(out),
            is_python_module=False,
            verbose=verbose,
        )
    finally:
        if preload is not None:
            os.environ["LD_PRELOAD"] = preload


if __name__ == "__main__":
    print(build(verbose="-v" in sys.argv))
