"""One home per definition: label and annotation keys, type aliases and the Go duration parser
are defined once and imported everywhere else (issue #15). Checked on the source, like
tests/test_layers.py, so a copy cannot come back unnoticed."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("controller", "bench")

#: A qualified label, annotation or finalizer key: ``<DNS subdomain>/<name>``.
_KEY = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.[a-z]{2,}/[A-Za-z0-9][-A-Za-z0-9_.]*")


def _module_assignments() -> list[tuple[str, int, ast.expr]]:
    """(path, line, value) of every module-level assignment with a value."""
    found = []
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                    found.append((str(path.relative_to(ROOT)), node.lineno, node.value))
    return found


def _repeated(definitions: dict[str, list[str]]) -> dict[str, list[str]]:
    return {value: where for value, where in definitions.items() if len(where) > 1}


def test_each_label_and_annotation_key_is_defined_once() -> None:
    keys: dict[str, list[str]] = defaultdict(list)
    for path, line, value in _module_assignments():
        text = value.value if isinstance(value, ast.Constant) else None
        if isinstance(text, str) and _KEY.fullmatch(text):
            keys[text].append(f"{path}:{line}")
    assert "cluster.x-k8s.io/cluster-name" in keys  # the scan sees what it guards
    assert _repeated(keys) == {}, "import the key from its one home (controller/api/labels.py)"


def test_each_type_alias_is_defined_once() -> None:
    # ``Obj = dict[str, Any]`` once (controller/runtime/store.py), and so for every alias.
    aliases: dict[str, list[str]] = defaultdict(list)
    for path, line, value in _module_assignments():
        if isinstance(value, ast.Subscript):
            aliases[ast.unparse(value)].append(f"{path}:{line}")
    assert "dict[str, Any]" in aliases
    assert _repeated(aliases) == {}, "import the alias from its one home"


def test_the_go_duration_format_is_parsed_in_one_place() -> None:
    # Its unit table, wherever it is spelt out (a regex, a dict), lives in api/duration.py.
    units = re.compile(r"ms\|s\|m\|h|[\"']ms[\"']\s*:")
    where = [
        str(path.relative_to(ROOT))
        for source in SOURCES
        for path in sorted((ROOT / source).rglob("*.py"))
        if units.search(path.read_text())
    ]
    assert where == ["controller/api/duration.py"]
