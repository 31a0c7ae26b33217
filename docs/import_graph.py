"""Print which top-level packages import which: every import statement, including those inside functions.

Run from the repository root: `python3 docs/import_graph.py [package]` (with a package name it also lists
that package's module-level edges). `lint-imports` (pyproject.toml) is the referee; this only shows the graph.
"""
import ast
import collections
import os
import sys

PACKAGES = {"primitives", "genesis", "consensus", "chain", "economy", "inference", "p2p", "node", "benchmarks", "tests"}


def get_module_name(path: str) -> str:
    name = path[:-3].replace("/", ".")
    return name[:-9] if name.endswith(".__init__") else name


def get_imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if not node.level:
            return [node.module]
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        return [".".join(base + ([node.module] if node.module else []))]
    return []


def main() -> None:
    edges, module_edges = collections.defaultdict(set), collections.defaultdict(set)
    for root, _, files in os.walk("."):
        for file in files:
            path = os.path.join(root, file)[2:]
            top = path.split("/")[0]
            if not file.endswith(".py") or top not in PACKAGES or ".venv" in path:
                continue
            module = get_module_name(path)
            for node in ast.walk(ast.parse(open(path).read())):
                for name in get_imported(node, module, file == "__init__.py"):
                    target = name.split(".")[0]
                    if target in PACKAGES:
                        module_edges[module].add(name)
                        if target != top:
                            edges[top].add(target)
    for package in sorted(edges):
        print(package, "->", ", ".join(sorted(edges[package])))
    if len(sys.argv) > 1:
        for module in sorted(m for m in module_edges if m.split(".")[0] == sys.argv[1]):
            print(" ", module, "->", ", ".join(sorted(module_edges[module])))


if __name__ == "__main__":
    main()
