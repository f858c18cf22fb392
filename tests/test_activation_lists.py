"""The activation table (pygan/ops/activations.py, mirrored by csrc/common/activation.h) is the one list of the
activations: prose (docs/*.md, the docstrings and comments of pygan/ and csrc/) points at it. A list in prose that
names several activations but not all of them is a stale copy of the table (or a rule of it written out by hand):
it fails here. A complete list passes until an activation is added to the table; then it fails too."""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from pygan.ops import activations

ROOT = Path(__file__).resolve().parents[1]
BREAK = "\x00"  # stands for code: a list never runs across it
POINTER = re.compile(r"pygan/ops/activations\.py|csrc/common/activation\.h|common/activation\.h")
# Prose that points at the table instead of listing it; each must be found, so the scan cannot pass vacuously.
POINTER_SITES = ("docs/add-an-activation.md", "docs/ops.md", "pygan/ops/batch_norm_act.py", "pygan/ops/bias_act.py",
                 "pygan/ops/instance_norm_act.py", "pygan/nn/conv_bn_act.py", "pygan/fuse.py", "csrc/pygan.cpp")
SMALLEST_LIST = 3  # distinct names; two ("leaky_relu / prelu") are a pair, not a copy of the table


def _aliases(act) -> set[str]:
    """How prose names an entry: leaky_relu, leaky relu, leaky-relu, LeakyReLU, leaky; its stock module's name."""
    name = act.name
    out = {name, name.replace("_", " "), name.replace("_", "-"), name.replace("_", ""), act.module.__name__}
    if "_" in name:
        out.add(name.split("_")[0])
    return {a.lower() for a in out}


ALIAS = {alias: act.name for act in activations.ACTIVATIONS.values() for alias in _aliases(act)}
MENTION = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(sorted(map(re.escape, ALIAS), key=len, reverse=True))
                     + r")(?![A-Za-z0-9_])", re.IGNORECASE)
PAREN = re.compile(r"\([^()]{0,80}\)")
# What may stand between two names of one list: punctuation, quotes, "and" / "or", a module prefix, an aside.
SEPARATOR = re.compile(r"(?:[\s'\"`*,/|;]|\band\b|\bor\b|\bnn\.|\btorch\.|\bF\.)*", re.IGNORECASE)


def lists_in(text: str) -> list[tuple[int, set[str]]]:
    """(offset, names) of every run of >= SMALLEST_LIST distinct activation names joined by separators only."""
    found, run, start, last_end = [], [], 0, None
    for m in MENTION.finditer(text):
        if last_end is not None and SEPARATOR.fullmatch(PAREN.sub(" ", text[last_end:m.start()])):
            run.append(ALIAS[m.group(1).lower()])
        else:
            if len(set(run)) >= SMALLEST_LIST:
                found.append((start, set(run)))
            run, start = [ALIAS[m.group(1).lower()]], m.start()
        last_end = m.end()
    if len(set(run)) >= SMALLEST_LIST:
        found.append((start, set(run)))
    return found


def _python_prose(source: str) -> str:
    """The source with everything but docstrings and comments replaced by BREAK (newlines and offsets kept)."""
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out = [c if c == "\n" else BREAK for c in source]

    def keep(start, end, strip=0):
        a, b = starts[start[0] - 1] + start[1], starts[end[0] - 1] + end[1]
        out[a:a + strip] = " " * strip
        out[a + strip:b] = source[a + strip:b]

    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            v = body[0].value
            keep((v.lineno, v.col_offset), (v.end_lineno, v.end_col_offset))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            keep(tok.start, tok.end, strip=1)
    return "".join(out)


def _cpp_prose(source: str) -> str:
    """The source with everything but // and /* */ comments replaced by BREAK (newlines and offsets kept)."""
    out = [c if c == "\n" else BREAK for c in source]
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
            out[i:i + 2] = "  "
            out[i + 2:end] = source[i + 2:end]
            i = end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            end = n if end < 0 else end
            out[i:i + 2] = "  "
            out[i + 2:end] = source[i + 2:end]
            i = end + 2
        elif re.match(r'R"([^(\s]*)\(', source[i:i + 20]) and (i == 0 or not source[i - 1].isalnum()):
            delim = re.match(r'R"([^(\s]*)\(', source[i:i + 20]).group(1)
            end = source.find(f'){delim}"', i)
            i = n if end < 0 else end + len(delim) + 2
        elif c in "\"'":
            i += 1
            while i < n and source[i] != c and source[i] != "\n":
                i += 2 if source[i] == "\\" else 1
            i += 1
        else:
            i += 1
    return "".join(out)


def prose_files() -> dict[str, str]:
    """{path relative to the root: its prose} for README.md, docs/*.md and the sources of pygan/ and csrc/."""
    out = {"README.md": (ROOT / "README.md").read_text()}
    for p in sorted((ROOT / "docs").glob("*.md")):
        out[p.relative_to(ROOT).as_posix()] = p.read_text()
    for p in sorted((ROOT / "pygan").rglob("*.py")):
        out[p.relative_to(ROOT).as_posix()] = _python_prose(p.read_text())
    for p in sorted((ROOT / "csrc").rglob("*")):
        if p.suffix in (".h", ".cpp", ".cu", ".cuh", ".inc"):
            out[p.relative_to(ROOT).as_posix()] = _cpp_prose(p.read_text())
    return out


PROSE = prose_files()


def test_the_scan_sees_the_sources():
    assert len([p for p in PROSE if p.startswith("pygan/")]) >= 50
    assert len([p for p in PROSE if p.startswith("csrc/")]) >= 30
    assert len([p for p in PROSE if p.startswith("docs/")]) >= 10
    # the prose of the table's own module mentions no list, but the scan reads its docstring
    assert "THE activation spec" in PROSE["pygan/ops/activations.py"]
    assert "def get" not in PROSE["pygan/ops/activations.py"]
    assert "m.def(" not in PROSE["csrc/pygan.cpp"] and "batch_norm_act(Tensor" not in PROSE["csrc/pygan.cpp"]


def test_the_detector_finds_partial_and_complete_lists():
    names = list(activations.NAMES)
    partial = "activation ('identity' | 'relu' | 'leaky_relu' | 'prelu')"
    assert [n for _, n in lists_in(partial)] == [{"identity", "relu", "leaky_relu", "prelu"}]
    prose = "BatchNorm + ReLU/LeakyReLU (0.2)/PReLU pairs; identity, leaky ReLU and nn.PReLU"
    assert [n for _, n in lists_in(prose)] == [{"relu", "leaky_relu", "prelu"}, {"identity", "leaky_relu", "prelu"}]
    assert [n for _, n in lists_in(", ".join(names))] == [set(names)]
    # names apart in a sentence, or in identifiers, are no list
    assert lists_in("relu keeps its input; the identity and tanh do not. prelu_parameters, loss_identity") == []
    assert lists_in(_python_prose("x = ['relu', 'tanh', 'prelu']  # relu\n")) == []
    assert lists_in(_cpp_prose('f("relu, tanh, prelu"); // tanh\nint x;\n/* relu, leaky */ g();\n')) == []
    assert [n for _, n in lists_in(_cpp_prose("// relu, leaky_relu,\n// prelu\nint x;\n"))] == [
        {"relu", "leaky_relu", "prelu"}]


@pytest.mark.parametrize("path", POINTER_SITES)
def test_known_sites_point_at_the_table(path):
    assert POINTER.search(PROSE[path]), f"{path} no longer points at the activation table"


def test_no_prose_names_some_but_not_all_activations():
    everything = set(activations.NAMES)
    partial = []
    for path, text in PROSE.items():
        for offset, names in lists_in(text):
            if names != everything:
                line = text.count("\n", 0, offset) + 1
                partial.append(f"{path}:{line}: names {', '.join(sorted(names))}; "
                               f"lacks {', '.join(sorted(everything - names))}")
    assert not partial, ("prose lists some of the activations; point at the table (pygan/ops/activations.py) "
                         "or its rules instead:\n" + "\n".join(partial))
