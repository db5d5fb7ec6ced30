"""The package's import graph has no circles.

The graph is built from the source with :mod:`ast`: an edge A -> B for every ``import``
in module A that names module B, wherever it stands: at module level, inside a function
(a deferred import still ties the two modules together) or under ``if TYPE_CHECKING:``
(a type-only import is still a dependency of the design).  Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``;
those implicit edges to parent packages are left out (every module would otherwise be in
a circle with ``lmmkit/__init__``, which re-exports the public names).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "lmmkit"

# Import circles tolerated for now (none: the glmm model <-> result circle is gone).
KNOWN_CYCLES: list[set[str]] = []


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement in ``tree`` names."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the lmmkit modules it imports."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = _imports(tree, name, path.name == "__init__.py")
        graph[name] = {n for n in names if n in files and n != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        v = stack.pop()
                        on_stack.discard(v)
                        comp.add(v)
                        if v == node:
                            break
                    if len(comp) > 1:
                        out.append(comp)
    return out


def test_graph_sees_known_edges():
    graph = import_graph()
    assert "lmmkit.errors" in graph["lmmkit.models.lmm"]
    assert len(graph) > 50


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]


def test_no_import_cycles():
    found = cycles(import_graph())
    unexpected = [c for c in found if not any(c <= known for known in KNOWN_CYCLES)]
    assert not unexpected, "import circles: " + "; ".join(
        " <-> ".join(sorted(c)) for c in unexpected
    )


def test_only_the_dask_backend_imports_dask():
    """One module imports Dask (docs/architecture.md): every other module asks it."""
    import re

    pattern = re.compile(r"^\s*(import|from)\s+(dask|distributed)\b", re.M)
    offenders = [
        str(p.relative_to(SRC))
        for p in sorted(SRC.rglob("*.py"))
        if pattern.search(p.read_text()) and p.name != "dask_backend.py"
    ]
    assert not offenders, f"modules importing dask directly: {offenders}"
