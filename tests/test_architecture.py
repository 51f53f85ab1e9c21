"""The house stays easy to see: no import circles, a fast --help, help text from the registry."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from latentbench.config import config_fields
from latentbench.generate import GenerateRequest
from latentbench.methods import METHODS, method_class

PACKAGE = Path(__file__).resolve().parents[1] / "latentbench"
README = PACKAGE.parent / "README.md"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package imported at module level (not inside functions, not under TYPE_CHECKING)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)

    visit(ast.parse(path.read_text()).body)
    return {m for m in found if m in modules and m != name}


def test_no_module_level_import_circle() -> None:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _runtime_imports(path, set(files)) for name, path in files.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    base = graph["latentbench.methods.base"]  # the protocol knows no method (the old circle)
    assert not {m for m in base if m.startswith("latentbench.methods")}, base


def test_help_imports_no_torch() -> None:
    code = ("import sys; sys.argv = ['latentbench', '--help']\n"
            "from latentbench.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'polars', 'zarr', 'datasets') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "HEAVY []" in out, out


def test_method_help_comes_from_the_registry() -> None:
    for command in ("eval", "generate"):
        out = subprocess.run([sys.executable, "-m", "latentbench", command, "--help"], capture_output=True,
                             text=True, timeout=120, env={"COLUMNS": "250", "PATH": ""}, check=True).stdout
        flat = " ".join(out.split())
        assert all(name in flat for name in METHODS), (command, flat)


def test_methods_command_lists_every_field_of_latent_tree() -> None:
    out = subprocess.run([sys.executable, "-m", "latentbench", "methods", "latent-tree"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    for field in config_fields(method_class("latent-tree").config_class):
        assert re.search(rf"^\s+{field.flag}\s+{re.escape(field.type_name)}\s", out, re.M), field.name
        assert field.help in out


def test_readme_push_example_matches_the_default_dataset_version() -> None:
    """The README generates with the default version, then pushes: the versions must agree."""
    pushed = re.findall(r"latentbench push \S+ \S+ --version (\S+)", README.read_text())
    assert pushed and set(pushed) == {GenerateRequest.version}
