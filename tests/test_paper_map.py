"""docs/PAPER_MAP.md cannot rot: every function it names exists, at the lines it states.

After moving code, refresh the line numbers with `python tests/test_paper_map.py --update`
(it rewrites only the lines column; a renamed or deleted function still fails until the map is edited).
"""

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAP = REPO / "docs" / "PAPER_MAP.md"
ROW = re.compile(r"`(?P<file>[\w/]+\.py)` `(?P<name>[\w.]+)` \| (?P<a>\d+)-(?P<b>\d+) \|")


def spans(path: Path) -> dict[str, tuple[int, int]]:
    """Qualified name (`Class.method` or `function`) -> (first line, last line) of every def and class."""
    out: dict[str, tuple[int, int]] = {}

    def walk(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out[name] = (first, child.end_lineno)
                walk(child, name + ".")

    walk(ast.parse(path.read_text()), "")
    return out


def rows(text: str) -> list[re.Match]:
    return list(ROW.finditer(text))


def test_paper_map_names_exist_at_their_lines():
    text = MAP.read_text()
    found = rows(text)
    assert len(found) >= 25, "the map lost its rows"
    cache: dict[str, dict] = {}
    problems = []
    for m in found:
        f, name, a, b = m["file"], m["name"], int(m["a"]), int(m["b"])
        cache.setdefault(f, spans(REPO / f) if (REPO / f).exists() else {})
        if name not in cache[f]:
            problems.append(f"{f}: `{name}` no longer exists")
        elif cache[f][name] != (a, b):
            problems.append(f"{f}: `{name}` is at lines {cache[f][name][0]}-{cache[f][name][1]}, the map says {a}-{b}")
    assert not problems, "docs/PAPER_MAP.md is out of date (python tests/test_paper_map.py --update):\n" + "\n".join(problems)


def update() -> int:
    text = MAP.read_text()
    missing = 0

    def fix(m: re.Match) -> str:
        nonlocal missing
        s = spans(REPO / m["file"]).get(m["name"]) if (REPO / m["file"]).exists() else None
        if s is None:
            missing += 1
            print(f"not found: {m['file']} {m['name']}")
            return m[0]
        return f"`{m['file']}` `{m['name']}` | {s[0]}-{s[1]} |"

    MAP.write_text(ROW.sub(fix, text))
    return missing


if __name__ == "__main__":
    if "--update" in sys.argv:
        sys.exit(1 if update() else 0)
    print(__doc__)
