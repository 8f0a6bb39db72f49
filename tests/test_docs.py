"""The repository's text: generated docs current, no history talk, the spec cited in-repo by existing
sections, links that resolve.

Fast (no build beyond importing the package for docs/gen_operators.py). The file list is
``git ls-files``; raw machine logs (examples/results/**/*.log) are records and are not read.
The patterns below are assembled from pieces so that this file does not match them itself.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

_S, _I = "ses" + "sion", "is" + "sue"
# Phrases in which the product would speak of its own history (docs/README.md's rule).
HISTORY = re.compile("|".join([
    rf"\b{_S} [0-9]+", rf"\b{_S}s? [0-9]", rf"\b{_I} [0-9#]+", rf"\b{_I} #",
    rf"\bbefore {_S}", rf"\bsince {_S}", r"\bfix" + r"ed in [0-9a-f]{7}",
    r"\bprevi" + "ously", r"\bused to" + " be", r"\bno " + "longer",
]), re.IGNORECASE)
# The spec lives in the repository: docs/algorithms.md, cited as `docs/algorithms.md §x.y`.
OUTSIDE_SPEC = "ALGO" + "RITHMS.md"

README_MAX_LINES = 150

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def tracked_files() -> list[str]:
    """Paths of the tracked files, relative to the repository root."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the file list comes from git ls-files")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def is_record(path: str) -> bool:
    """Raw machine logs under examples/results/ are kept as written."""
    return path.startswith("examples/results/") and path.endswith(".log")


def product_texts():
    """(path, text) of every tracked text file that is not a raw log (binary files skipped)."""
    for path in tracked_files():
        if is_record(path) or not (ROOT / path).is_file():
            continue
        text = read_text(ROOT / path)
        if text is not None:
            yield path, text


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file (NUL byte or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def forbidden_phrases(text: str) -> list[tuple[int, str]]:
    """(line number, phrase) for every history phrase or out-of-repo spec citation in text."""
    found = []
    for no, line in enumerate(text.splitlines(), 1):
        found += [(no, m.group(0)) for m in HISTORY.finditer(line)]
        if OUTSIDE_SPEC in line:
            found.append((no, OUTSIDE_SPEC))
    return found


def relative_links(markdown: str) -> list[str]:
    """Targets of the Markdown links and images that point into the repository (no URL, no
    bare #anchor), outside code blocks and code spans, without their #fragment."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    targets = []
    for target in _LINK.findall(text):
        if _SCHEME.match(target) or target.startswith("#"):
            continue
        targets.append(unquote(target.split("#", 1)[0].split("?", 1)[0]))
    return targets


def spec_sections(algorithms_md: str) -> set[str]:
    """Section numbers of docs/algorithms.md's headings ("## 1. NACA" -> "1", "### 1.4 ..." -> "1.4")."""
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", algorithms_md, re.MULTILINE))


def spec_citations(text: str) -> list[tuple[int, str]]:
    """(line number, section) for every `docs/algorithms.md §x.y` citation; a line citing it
    once may name several sections (§1.5 and §2.2, §1.3-1.4)."""
    found = []
    for no, line in enumerate(text.splitlines(), 1):
        if "algorithms.md §" in line:
            found += [(no, s) for s in re.findall(r"§(\d+(?:\.\d+)?)", line)]
    return found


def broken_links(md_file: Path) -> list[str]:
    """The relative link targets of md_file that name no existing file or folder."""
    return [t for t in relative_links(md_file.read_text(encoding="utf-8"))
            if not (md_file.parent / t).exists()]


def test_operators_md_is_generated_and_current():
    """docs/operators.md equals what docs/gen_operators.py writes now (the script's --check)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "docs/gen_operators.py", "--check"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout


def test_no_history_phrases_or_outside_spec_citations():
    """No tracked text file (logs under examples/results/ aside) speaks of the project's history or
    cites the spec outside the repository."""
    bad = [f"{path}:{no}: {phrase!r}" for path, text in product_texts() for no, phrase in forbidden_phrases(text)]
    assert not bad, "state the present fact instead (and cite docs/algorithms.md §x.y):\n" + "\n".join(bad)


def test_spec_citations_name_existing_sections():
    """Every `docs/algorithms.md §x.y` in the tracked text names a heading of docs/algorithms.md."""
    sections = spec_sections((ROOT / "docs" / "algorithms.md").read_text(encoding="utf-8"))
    assert {"1", "1.1", "2.1", "3"} <= sections, sorted(sections)
    bad = [f"{path}:{no}: §{s}" for path, text in product_texts() for no, s in spec_citations(text)
           if s not in sections]
    assert not bad, "citations of sections docs/algorithms.md does not have:\n" + "\n".join(bad)


def test_readme_is_short():
    """README.md is the entry page; details belong in docs/."""
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines, at most {README_MAX_LINES} expected"


def test_relative_links_resolve():
    """Every relative link of README.md, BENCHMARKS.md and docs/*.md names an existing file."""
    pages = [p for p in tracked_files()
             if p in ("README.md", "BENCHMARKS.md") or re.fullmatch(r"docs/[^/]+\.md", p)]
    assert "README.md" in pages
    bad = [f"{p}: {t}" for p in pages for t in broken_links(ROOT / p)]
    assert not bad, "links to missing files:\n" + "\n".join(bad)


# The detectors above, against planted violations: each must flag what it is there to catch.

def test_history_detector_flags_planted_phrases():
    planted = [f"measured in {_S} 4", f"{_I} #23 asks for it", f"(fixed in {'8f2cd9d'})",
               f"as it did before {_S} 9", f"the op previ{'ously'} copied", f"it is no {'longer'} needed",
               f"see {OUTSIDE_SPEC} 1.4"]
    for line in planted:
        assert forbidden_phrases(line), line
    assert forbidden_phrases("\n".join(planted)) and len(forbidden_phrases("\n".join(planted))) == len(planted)
    assert not forbidden_phrases("the tissue 3 sample; docs/algorithms.md §1.4; measured at commit abc1234")


def test_citation_detector_flags_planted_missing_section():
    sections = spec_sections("# T\n## 1. NACA\n### 1.1 E\n### 1.4 ANN\n## 3. Metrics\n")
    assert sections == {"1", "1.1", "1.4", "3"}
    cited = spec_citations("x (docs/algorithms.md \u00a71.4 and \u00a71.9)\ny docs/algorithms.md \u00a73\n")
    assert cited == [(1, "1.4"), (1, "1.9"), (2, "3")]
    assert [s for _, s in cited if s not in sections] == ["1.9"]


def test_link_detector_flags_planted_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "present.md").write_text("x")
    page = tmp_path / "docs" / "page.md"
    page.write_text("[ok](../present.md#part) ![img](../present.md) [gone](missing.md)\n"
                    "[web](https://example.org/x.md) [here](#anchor) `[code](nothere.md)`\n"
                    "```\n[fenced](alsonothere.md)\n```\n")
    assert broken_links(page) == ["missing.md"]
