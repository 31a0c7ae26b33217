"""p2p's imports point one way: no module imports another that (transitively) imports it back.

Every import counts, wherever it is written: at the top, inside a function, or
under `if TYPE_CHECKING:`, since a cycle hidden there is still a cycle in the
design. Run as a script (`python -m tests.p2p.test_layers`) to print the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "p2p"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / PACKAGE


def get_module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def compute_import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its source)."""
    modules = {get_module_name(path): path for path in package_dir.glob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for target in compute_import_targets(node, set(modules)):
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def compute_import_targets(node: ast.AST, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    # Every module here sits directly in the package, so one leading dot is the package.
    base = PACKAGE if node.level else (node.module or "")
    if node.level and node.module:
        base = f"{PACKAGE}.{node.module}"
    if base != PACKAGE:
        return [base]
    # `from . import x` names a submodule when x is one, else something of __init__.
    names = [f"{PACKAGE}.{alias.name}" for alias in node.names]
    return [name if name in modules else PACKAGE for name in names]


def compute_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in graph[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def compute_reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for child in graph[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_p2p_has_no_import_cycles():
    assert compute_cycles(compute_import_graph()) == []


def test_peer_knows_its_host_only_through_the_interface():
    graph = compute_import_graph()
    assert "p2p.abc" in graph["p2p.peer"]
    reachable = compute_reachable(graph, "p2p.peer")
    assert "p2p.service" not in reachable and PACKAGE not in reachable


def test_the_checker_sees_imports_in_functions_and_type_checking_blocks(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
    )
    (tmp_path / "b.py").write_text("def f():\n    from p2p.a import A\n")
    (tmp_path / "c.py").write_text("from . import b\n")
    graph = compute_import_graph(tmp_path)
    assert graph["p2p.a"] == {"p2p.b"} and graph["p2p.b"] == {"p2p.a"}
    assert "p2p.b" in graph["p2p.c"]
    assert compute_cycles(graph) == [["p2p.a", "p2p.b"]]


def main() -> None:
    graph = compute_import_graph()
    for name in sorted(graph):
        imports = ", ".join(sorted(target.removeprefix("p2p.") for target in graph[name]))
        print(f"{name:22} -> {imports or '-'}")
    cycles = compute_cycles(graph)
    print(f"cycles: {cycles if cycles else 'none'}")
    print(f"p2p.peer reaches p2p.service: {'p2p.service' in compute_reachable(graph, 'p2p.peer')}")


if __name__ == "__main__":
    main()
