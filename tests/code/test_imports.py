"""The house stays in order: every import (those inside functions included) runs down a floor or stays in its
package, and no module imports itself round a circle.

Floors, bottom up: the ground (``leadscore``: errors, config, paths, contract, cells, small helpers), the
stages (``ingest`` with the synthetic CRM, ``features``, ``models``, ``reports``, ``serving``, each above the
ones before it), and the top (``flows``: steps, Prefect flows, deployments, the command line).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOORS = ["leadscore", "ingest", "features", "models", "reports", "serving", "flows"]


def import_graph(root: Path, packages: list[str]) -> dict[str, set[str]]:
    """module -> the project modules it imports, wherever in the file the import stands."""
    modules = {}
    for pkg in packages:
        for f in (root / pkg).rglob("*.py"):
            modules[".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__")] = f

    def target(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in modules}
    for m, f in modules.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.ImportFrom):
                base = m.split(".")[: -node.level] if f.name != "__init__.py" else m.split(".")[: len(m.split(".")) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                continue
            graph[m] |= {t for n in names if (t := target(n)) and t != m}
    return graph


def upward(graph: dict[str, set[str]], floors: list[str]) -> list[str]:
    level = {p: i for i, p in enumerate(floors)}
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                  if m.split(".")[0] != t.split(".")[0] and level[t.split(".")[0]] >= level[m.split(".")[0]])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_every_import_runs_down_a_floor_and_none_goes_round_a_circle():
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert sorted(FLOORS) == packages, "a package without a floor"
    graph = import_graph(ROOT, FLOORS)
    assert len(graph) > 50
    assert upward(graph, FLOORS) == []
    assert cycles(graph) == []


def test_the_checks_see_an_arrow_up_and_a_circle(tmp_path):
    for pkg, body in (("low", "def f():\n    from high import g\n"), ("high", "from low import f\n")):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(body)
    graph = import_graph(tmp_path, ["low", "high"])
    assert upward(graph, ["low", "high"]) == ["low -> high"]
    assert cycles(graph) == [["high", "low"]]
