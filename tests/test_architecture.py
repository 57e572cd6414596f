"""The layering is enforced, not a convention: import-linter's contracts (pyproject.toml) hold,
and they do catch an upward import."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

LINT = str(Path(sys.executable).parent / "lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # analyse the tree at `root`, not the installed one
    return subprocess.run([LINT, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in r.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    shutil.copytree(ROOT / "spelling_exp", tmp_path / "spelling_exp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    recipe = tmp_path / "spelling_exp" / "evaluation" / "recipe.py"
    recipe.write_text(recipe.read_text() + "\nfrom spelling_exp.stages.data import run_data_stage  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "spelling_exp.evaluation.recipe -> spelling_exp.stages.data" in r.stdout


# ------------------------------------------------------------------ no import cycles
# import-linter's layers allow cycles inside one layer (evaluation/backends -> llamacpp -> recipe
# -> backends was one), and a cycle only fails when its modules happen to load in the wrong
# order. So every import of a spelling_exp module counts here: inside functions too (they run
# later, but they are still a dependency), relative ones resolved, in package __init__ modules too.
def _module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in sorted((root / "spelling_exp").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    import ast

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            # `from pkg import sub` imports the submodule pkg.sub; `from pkg import name`, pkg itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import spelling_exp.x.y` of a name inside a module: the module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan, then a BFS inside it)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            components.append([v, *comp])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in (c for c in components if len(c) > 1):
        start, members = min(comp), set(comp)
        paths, seen = [[start]], {start}
        while paths:  # shortest way from `start` back to itself inside the component
            path = paths.pop(0)
            if start in graph[path[-1]] and len(path) > 1:
                cycles.append([*path, start])
                break
            for w in sorted(graph[path[-1]] & members - seen):
                seen.add(w)
                paths.append([*path, w])
    return cycles


def _import_graph(root: Path) -> dict[str, set[str]]:
    modules = _module_names(root)
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_the_module_graph_has_no_import_cycle(tmp_path):
    graph = _import_graph(ROOT)
    assert "spelling_exp.model.chat" in graph["spelling_exp.model.tokenizer"]  # the graph is really read
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)

    # ... and it does see one: a relative import inside a function, through a package __init__
    pkg = tmp_path / "spelling_exp" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "spelling_exp" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from spelling_exp.sub import a\n")
    (pkg / "a.py").write_text("def f():\n    from ..sub.b import g\n")
    (pkg / "b.py").write_text("from spelling_exp import sub\n")
    assert _cycles(_import_graph(tmp_path)) == [["spelling_exp.sub", "spelling_exp.sub.a", "spelling_exp.sub.b",
                                                 "spelling_exp.sub"]]
