"""The C++ side of the package, from Python: the naca::ops header against the op schemas and
torch_plugin.ops, the CMake package the set-up installs into torch_plugin/, and the rule that
the `naca` namespace is registered once per process whichever way libnaca is loaded.

(The C++ consumers themselves are built and run by ctest: tests/cpp/package_test.cmake.)
"""
from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torch_plugin
from torch_plugin import ops

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "include" / "naca" / "ops.h"
PACKAGE = Path(torch_plugin.__file__).resolve().parent


def naca_ops() -> set[str]:
    return {n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("naca::")}


def _split_top(text: str) -> list[str]:
    """Split on commas outside (), <>, {} and []."""
    parts, depth, cur = [], 0, []
    for c in text:
        depth += (c in "(<{[") - (c in ")>}]")
        if c == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    tail = "".join(cur).strip()
    return parts + [tail] if tail else parts


def _closing(text: str, at: int, pair: str) -> int:
    depth = 0
    for i in range(at, len(text)):
        depth += (text[i] == pair[0]) - (text[i] == pair[1])
        if depth == 0:
            return i
    raise ValueError(f"unbalanced {pair}")


def parse_header(text: str) -> dict[str, dict]:
    """Each `inline` function of naca::ops: its parameters (name, default text), the op name it
    looks up and the arguments of its op.call(...)."""
    text = re.sub(r"//.*", "", text)
    found = {}
    for m in re.finditer(r"\binline\s+[\w:<>,\s]+?\b(\w+)\s*\(", text):
        name, open_paren = m.group(1), m.end() - 1
        close = _closing(text, open_paren, "()")
        params = []
        for p in _split_top(text[open_paren + 1:close]):
            decl, _, default = p.partition("=")
            params.append((re.findall(r"\w+", decl)[-1], default.strip() or None))
        body_start = text.index("{", close)
        body = text[body_start:_closing(text, body_start, "{}") + 1]
        looked_up = re.search(r'detail::find<.*?>\(\s*"([\w:]+)"\s*\)', body, re.S)
        call = body.index("op.call(") + len("op.call")
        call_args = _split_top(body[call + 1:_closing(body, call, "()")])
        found[name] = dict(params=params, op=looked_up and looked_up.group(1), call=call_args)
    return found


def cpp_default(text: str):
    """A C++ default argument as the Python value it stands for."""
    if text == "std::nullopt":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"'):
        return text.strip('"')
    if text.startswith("{"):
        return tuple(int(v) for v in _split_top(text[1:-1]))
    return float(text)


WRAPPERS = parse_header(HEADER.read_text())


def test_one_wrapper_per_schema():
    assert set(WRAPPERS) == naca_ops()
    assert naca_ops() <= set(ops.__all__)


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrapper_matches_schema_and_python(name):
    """Names and order of the schema and of torch_plugin.ops, torch_plugin.ops' defaults; the
    wrapper looks up its own op and passes every parameter, in order."""
    w = WRAPPERS[name]
    names = [n for n, _ in w["params"]]
    schema = getattr(torch.ops.naca, name).default._schema
    assert names == [a.name for a in schema.arguments]
    py = inspect.signature(getattr(ops, name)).parameters
    assert names == list(py)
    for n, default in w["params"]:
        want = py[n].default
        if want is inspect.Parameter.empty:
            assert default is None, f"{name}: '{n}' has a default in C++ only"
        else:
            assert default is not None, f"{name}: '{n}' lacks torch_plugin.ops' default {want!r}"
            got = cpp_default(default)
            assert got == (tuple(want) if isinstance(want, (list, tuple)) else want), (name, n, got, want)
    assert w["op"] == f"naca::{name}"
    assert w["call"] == names


def test_header_parser_sees_a_drift():
    """The check above fails on a wrapper with a wrong default, order or call."""
    text = HEADER.read_text()
    bad = parse_header(text.replace("double lam = 0.5, double theta = 1.2) {", "double lam = 0.4, double theta = 1.2) {", 1))
    assert cpp_default(dict(bad["modulation"]["params"])["lam"]) == 0.4
    swapped = parse_header(text.replace("return op.call(level, lam, theta);", "return op.call(level, theta, lam);"))
    assert swapped["modulation"]["call"] != [n for n, _ in swapped["modulation"]["params"]]


# --- the package's files ---------------------------------------------------------------

def test_package_holds_library_headers_and_cmake_config():
    lib = Path(torch_plugin.library_path)
    assert lib.is_file() and lib.parent == PACKAGE / "lib"
    cmake_dir = Path(torch_plugin.cmake_prefix_path) / "TorchPluginNaca"
    for f in ("TorchPluginNacaConfig.cmake", "TorchPluginNacaConfigVersion.cmake", "TorchPluginNacaTargets.cmake"):
        assert (cmake_dir / f).is_file(), f
    # The installed headers are the tree's (a stale install would differ).
    src = sorted(p.relative_to(ROOT / "csrc" / "include") for p in (ROOT / "csrc" / "include").rglob("*.h"))
    inst = sorted(p.relative_to(PACKAGE / "include") for p in (PACKAGE / "include").rglob("*.h"))
    assert src == inst and src
    for rel in src:
        assert (PACKAGE / "include" / rel).read_bytes() == (ROOT / "csrc" / "include" / rel).read_bytes(), rel


def test_cmake_config_records_this_build():
    cmake_dir = Path(torch_plugin.cmake_prefix_path) / "TorchPluginNaca"
    version = (cmake_dir / "TorchPluginNacaConfigVersion.cmake").read_text()
    assert f'set(PACKAGE_VERSION "{torch_plugin.__version__}")' in version
    config = (cmake_dir / "TorchPluginNacaConfig.cmake").read_text()
    assert f"set(TorchPluginNaca_WITH_CUDA {'ON' if torch_plugin.built_with_cuda() else 'OFF'})" in config
    major_minor = ".".join(torch.__version__.split(".")[:2])
    assert f'set(TorchPluginNaca_TORCH_VERSION "{major_minor}")' in config
    targets = (cmake_dir / "TorchPluginNacaTargets.cmake").read_text()
    assert "TorchPluginNaca::naca" in targets and "--no-as-needed" in targets


@pytest.mark.skipif(shutil.which("nm") is None or shutil.which("objdump") is None, reason="needs binutils")
def test_library_has_no_python_symbols():
    """libnaca serves C++ programs without Python: no Python C API symbol, no libpython or
    libtorch_python among the libraries it needs."""
    lib = torch_plugin.library_path
    undefined = subprocess.run(["nm", "-D", "--undefined-only", lib], capture_output=True, text=True,
                               check=True).stdout
    assert not re.search(r"\b_?Py[A-Z_]\w*", undefined), "libnaca uses the Python C API"
    needed = [line.split()[-1] for line in subprocess.run(["objdump", "-p", lib], capture_output=True, text=True,
                                                          check=True).stdout.splitlines() if "NEEDED" in line]
    assert needed and not [n for n in needed if "python" in n], needed


# --- one registration per process --------------------------------------------------------

def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_loading_the_package_library_again_is_harmless():
    r = _run("import torch, torch_plugin; torch.ops.load_library(torch_plugin.library_path); "
             "print(float(torch.ops.naca.modulation(torch.tensor([0.0]))[0]))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1.0"


def test_a_host_that_loaded_another_libnaca_keeps_its_registration(tmp_path):
    """A C++ host that linked an installed libnaca (another file), then imports torch_plugin: the
    package uses the ops already registered instead of registering the namespace again (which
    aborts the process: 'Only a single TORCH_LIBRARY can be used to register the namespace')."""
    host_copy = tmp_path / "libnaca.so"
    shutil.copy(torch_plugin.library_path, host_copy)
    r = _run(f"""
import ctypes, os, torch
ctypes.CDLL({str(host_copy)!r}, mode=ctypes.RTLD_GLOBAL)
import torch_plugin
print(float(torch_plugin.ops.modulation(torch.tensor([0.0]))[0]))
maps = open('/proc/self/maps').read()
print(os.path.realpath(torch_plugin.library_path) in maps)
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1.0", "False"]
