"""The README stays an overview: at most 250 lines, its map of the code names every package and top-level folder
of the tree (and nothing that is not there), and its relative links resolve."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _map() -> str:
    section = README.split("## Map of the code", 1)[1]
    return section.split("```", 2)[1]


def test_at_most_250_lines():
    assert len(README.splitlines()) <= 250


def _entries():
    """(top-level entries, entries under pygan/) of the map: the names before a line's description."""
    top, inside = [], []
    for line in _map().splitlines():
        if not line.strip():
            continue
        names = [n.strip() for n in line.strip().split("  ")[0].split(",")]
        if not line.startswith(" "):
            top += names
        elif line.startswith("  ") and line[2] != " ":
            inside += names
    return top, inside


def test_the_map_matches_the_tree():
    top, inside = _entries()
    for name in top:
        assert "<" in name or (ROOT / name).exists(), f"the README's map names {name}, which does not exist"
    for folder in ("csrc/", "cpp_tests/", "pygan/", "tests/", "benchmarks/", "docs/", ".ci/run"):
        assert any(n.startswith(folder) for n in top), f"the README's map leaves out {folder}"
    for name in inside:
        assert (ROOT / "pygan" / name).exists(), f"the README's map names pygan/{name}, which does not exist"
    parts = {p.name + "/" for p in (ROOT / "pygan").iterdir() if (p / "__init__.py").is_file()}
    parts |= {p.name for p in (ROOT / "pygan").glob("*.py") if p.name != "__init__.py"}
    assert parts <= set(inside), f"the README's map leaves out pygan/{sorted(parts - set(inside))}"


def test_relative_links_resolve():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
