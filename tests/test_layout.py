"""The package's layers, read from the source with ast (only the shadowing test imports it).

Each module imports only from layers below its own, so the engine never reaches into a command
and a command can be rewritten without touching the library. The table places every module:
a new one must be added to it, or the layout tests fail. Three more rules: nothing below the
commands names a command-line flag (a message names the API argument, and the CLI shows it as a
flag); no private name crosses from one module to another; and the modules named like the
public functions (``render`` is in ``engine``) are modules, the functions functions.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import types
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "dreamviz"

#: module (its name inside the package) -> layer, bottom to top. A subpackage named in GROUPS
#: covers every module under it. dreamviz/__init__.py, the public facade, is exempt; a module
#: that imports it imports the top of the package.
LAYERS = {
    "errors": 0,
    "defaults": 0,
    "colormaps": 1,
    "_version": 0,
    "io": 1,
    "_lite0": 1,
    "models": 1,
    "hooks": 2,
    "display": 2,
    "objectives": 3,
    "param": 3,
    "transforms": 3,
    "regularizers": 3,
    "optim": 3,
    "batching": 3,
    "engine": 4,
    "deepdream": 5,
    "attribution": 5,
    "_quadrature": 5,
    "visualize": 5,
    "recipes": 5,
    "gallery": 5,
    "explain": 6,
    "dataset": 6,
    "commands": 7,
    "cli": 7,
}
GROUPS = {"gallery", "commands", "dataset"}
FACADE_LAYER = max(LAYERS.values()) + 1
#: the lowest layer allowed to name a command-line flag
CLI_LAYER = LAYERS["commands"]
#: (importer, imported) groups of one layer that may import each other's way
SAME_LAYER = {
    ("models", "io"),
    ("models", "_lite0"),
    ("attribution", "_quadrature"),
    ("gallery", "recipes"),  # each gallery PNG carries a render recipe made by recipes.make
    ("attribution", "visualize"),  # saliency results draw themselves (never the other way)
    ("cli", "commands"),
}
#: private module -> the module it belongs to (the only one that may import it)
PRIVATE_OWNERS = {"_lite0": "models", "_quadrature": "attribution"}
#: private modules any module may import from
SHARED_PRIVATE = {"_version"}

# a flag: two dashes and a letter, not inside a word or a longer dash run; a CSS custom
# property (``--bg: #fff``, ``var(--bg)``, ``style.setProperty('--bg', v)``) is not one
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
CSS_BEFORE = re.compile(r"(?:var\(|Property\(\s*['\"])\s*$")
CSS_AFTER = re.compile(r"^\s*:")


@dataclass
class Module:
    name: str  # inside the package: "engine", "commands.render"; "" is the package itself
    path: Path
    where: str  # the file, from the repository root: "dreamviz/commands/render.py"
    tree: ast.Module = field(repr=False)

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def find_modules(root: Path = ROOT) -> dict[str, Module]:
    """Every module of the package under ``root``, subpackages included, by its inner name."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root / PACKAGE).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        where = path.relative_to(root).as_posix()
        found[name] = Module(name, path, where, ast.parse(path.read_text(), where))
    return found


def group(name: str) -> str:
    head = name.split(".")[0]
    return head if head in GROUPS else name


def layer(name: str) -> int | None:
    """The layer of a module, FACADE_LAYER for the package itself, None if not in the table."""
    return FACADE_LAYER if name == "" else LAYERS.get(group(name))


@dataclass
class Import:
    node: ast.AST
    module: str  # the module imported from, inside the package ("" is the package)
    names: list[str]  # the names it imports from that module (empty: the module itself)


def imports(module: Module, known: dict[str, Module]) -> list[Import]:
    """Every import of a package module in ``module``, at any depth (functions included).

    ``from .x import y`` where ``x.y`` is a module imports that module; otherwise ``y`` is a
    name of ``x``.
    """
    out = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                full = alias.name
                if full == PACKAGE or full.startswith(PACKAGE + "."):
                    out.append(Import(node, full[len(PACKAGE) + 1 :], []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                here = [PACKAGE, *module.name.split(".")] if module.name else [PACKAGE]
                if not module.is_package:
                    here.pop()
                base = here[: len(here) - (node.level - 1)]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            if not (full == PACKAGE or full.startswith(PACKAGE + ".")):
                continue
            inner = full[len(PACKAGE) + 1 :]
            names = []
            for alias in node.names:
                sub = f"{inner}.{alias.name}" if inner else alias.name
                if sub in known:
                    out.append(Import(node, sub, []))
                else:
                    names.append(alias.name)
            if names:
                out.append(Import(node, inner, names))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# --------------------------------------------------------------------------- the checks


def unplaced(modules: dict[str, Module]) -> list[str]:
    return [
        f"{m.where}: {m.name} is in no layer"
        for m in modules.values()
        if m.name and layer(m.name) is None
    ]


def layer_violations(modules: dict[str, Module]) -> list[str]:
    out = []
    for m in modules.values():
        if not m.name or layer(m.name) is None:
            continue
        for imp in imports(m, modules):
            target = imp.module
            if group(target) == group(m.name) and (target == m.name or group(m.name) in GROUPS):
                continue
            if (group(m.name), group(target)) in SAME_LAYER:
                continue
            mine, theirs = layer(m.name), layer(target)
            if theirs is None or theirs >= mine:
                shown = target or f"{PACKAGE} (the facade)"
                out.append(
                    f"{m.where}:{imp.node.lineno}: {m.name} (layer {mine}) imports "
                    f"{shown} (layer {theirs if theirs is not None else 'unknown'})"
                )
    return out


def _strings(tree: ast.Module):
    """Every string constant (f-string parts included) that is not a docstring."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node


def flag_violations(modules: dict[str, Module]) -> list[str]:
    out = []
    for m in modules.values():
        if not m.name or layer(m.name) is None or layer(m.name) >= CLI_LAYER:
            continue
        source = m.path.read_text().splitlines()
        found: dict[int, list[str]] = {}
        for node in _strings(m.tree):
            text = node.value
            line = node.lineno  # a string over several lines: find each flag's own line
            for f in FLAG.finditer(text):
                if CSS_BEFORE.search(text[: f.start()]) or CSS_AFTER.search(text[f.end() :]):
                    continue
                line = next(
                    (i for i in range(line, node.end_lineno + 1) if f.group() in source[i - 1]),
                    line,
                )
                found.setdefault(line, []).append(f.group())
        for line, flags in sorted(found.items()):
            out.append(f"{m.where}:{line}: {m.name} names {', '.join(dict.fromkeys(flags))}")
    return out


def _private_module(name: str) -> str | None:
    """The first private module on the path of ``name`` ("gallery._page" for "gallery._page.x")."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            return ".".join(parts[: i + 1])
    return None


def private_violations(modules: dict[str, Module]) -> list[str]:
    out = []
    for m in modules.values():
        if not m.name:
            continue
        for imp in imports(m, modules):
            where = f"{m.where}:{imp.node.lineno}: {m.name}"
            hidden = _private_module(imp.module)
            if hidden and hidden != _private_module(m.name):
                parent = hidden.rpartition(".")[0]
                own = (
                    hidden in SHARED_PRIVATE
                    or PRIVATE_OWNERS.get(hidden) == m.name
                    or (parent and (m.name == parent or m.name.startswith(parent + ".")))
                )
                if not own:
                    out.append(f"{where} imports the private module {hidden}")
            if imp.module != m.name:
                for name in imp.names:
                    if _private(name):
                        out.append(f"{where} imports the private name {name} from {imp.module}")
    return out


# --------------------------------------------------------------------------- the tests


def _report(violations: list[str]) -> str:
    return f"{len(violations)} violation(s):\n" + "\n".join(violations)


def test_walk_finds_the_package():
    names = set(find_modules())
    assert {"", "engine", "models", "_lite0", "commands", "commands.render", "cli"} <= names
    assert any(name.startswith("gallery") for name in names)


def test_every_module_is_placed_in_a_layer():
    assert not (found := unplaced(find_modules())), _report(found)


def test_modules_import_only_from_lower_layers():
    assert not (found := layer_violations(find_modules())), _report(found)


def test_no_flag_is_named_below_the_commands():
    assert not (found := flag_violations(find_modules())), _report(found)


def test_no_private_name_crosses_modules():
    assert not (found := private_violations(find_modules())), _report(found)


def test_the_functions_are_not_shadowed_by_modules():
    import dreamviz

    for module, function in [
        ("engine", "render"),
        ("attribution", "saliency"),
        ("deepdream", "dream"),
        ("dataset", "examples"),
    ]:
        imported = importlib.import_module(f"{PACKAGE}.{module}")
        assert isinstance(imported, types.ModuleType)
        assert getattr(dreamviz, module) is imported, f"dreamviz.{module} is not the module"
        public = getattr(dreamviz, function)
        assert inspect.isfunction(public), f"dreamviz.{function} is {type(public).__name__}"
        assert public is getattr(imported, function)
        assert importlib.util.find_spec(f"{PACKAGE}.{function}") is None, (
            f"a module {PACKAGE}.{function} would shadow the function"
        )


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_find_each_kind_of_violation(tmp_path):
    # a small package with one violation of each rule and, beside it, what is allowed
    _write(
        tmp_path,
        {
            "__init__.py": "from .engine import render\n",
            "errors.py": '"""Docstrings may name --flags."""\n',
            "_lite0.py": "",
            "_version.py": "__version__ = '1'\n",
            "models.py": (
                "from . import _lite0\nfrom .io import x\nfrom ._version import __version__\n"
            ),
            "io.py": "from .models import VisionModel\n",
            "engine.py": (
                "from .param import _seeds\n"
                "def f():\n"
                '    """--lr in a docstring is fine."""\n'
                '    return f"lower --lr, not {1}", "--", "a--b", "var(--bg)", "--tile: 1px"\n'
            ),
            "param.py": "import dreamviz._lite0\nfrom dreamviz.models import _x\n",
            "gallery/__init__.py": "from . import page\nfrom ._html import X\n",
            "gallery/page.py": "from ..commands.render import SETTINGS\nfrom . import _html\n",
            "gallery/_html.py": "",
            "commands/__init__.py": "from .. import engine\n",
            "commands/render.py": "from . import parent\nflag = '--lr'\n",
            "cli.py": "from .commands import render\nfrom . import render as f\n",
            "hooks.py": "from . import UsageError\n",
            "newthing.py": "",
        },
    )
    modules = find_modules(tmp_path)
    assert unplaced(modules) == ["dreamviz/newthing.py: newthing is in no layer"]
    assert layer_violations(modules) == [
        "dreamviz/cli.py:2: cli (layer 7) imports dreamviz (the facade) (layer 8)",
        "dreamviz/gallery/page.py:1: gallery.page (layer 5) imports commands.render (layer 7)",
        "dreamviz/hooks.py:1: hooks (layer 2) imports dreamviz (the facade) (layer 8)",
        "dreamviz/io.py:1: io (layer 1) imports models (layer 1)",
    ]
    assert flag_violations(modules) == ["dreamviz/engine.py:4: engine names --lr"]
    assert private_violations(modules) == [
        "dreamviz/engine.py:1: engine imports the private name _seeds from param",
        "dreamviz/param.py:1: param imports the private module _lite0",
        "dreamviz/param.py:2: param imports the private name _x from models",
    ]
