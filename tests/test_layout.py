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
    "interrupts": 0,
    "io": 1,
    "settings": 1,
    "_lite0": 1,
    "models": 1,
    "hooks": 2,
    "display": 2,
    "results": 3,
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
    "visualize": 3,
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
    ("results", "visualize"),  # saliency results draw themselves (never the other way)
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
        if not m.name:  # the facade may import any layer but the command line's
            out += [
                f"{m.where}:{imp.node.lineno}: the package imports {imp.module} (the command "
                "line); put what both need in a low module"
                for imp in imports(m, modules)
                if layer(imp.module) is not None and layer(imp.module) >= CLI_LAYER
            ]
            continue
        if layer(m.name) is None:
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


def cli_commands(modules: dict[str, Module]) -> list[str]:
    """The command names, as ``cli.COMMANDS`` lists them (read from its source)."""
    for node in ast.walk(modules["cli"].tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMMANDS" for t in node.targets
        ):
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return []


def command_text_violations(modules: dict[str, Module]) -> list[str]:
    """``dreamviz COMMAND`` in a string below the CLI: a library message names the API
    (``dreamviz.layers('resnet18')``), which a Python caller can use; docstrings may name both."""
    names = cli_commands(modules)
    if not names:
        return ["dreamviz/cli.py: no COMMANDS list found"]
    command = re.compile(r"\bdreamviz (?:" + "|".join(map(re.escape, names)) + r")\b")
    out = []
    for m in modules.values():
        if not m.name or layer(m.name) is None or layer(m.name) >= CLI_LAYER:
            continue
        for node in _strings(m.tree):
            for found in command.finditer(node.value):
                out.append(f"{m.where}:{node.lineno}: {m.name} names the command {found.group()!r}")
    return out


def script_private_violations(root: Path = ROOT) -> list[str]:
    """Private dreamviz names imported by a script: scripts use the public API, as users do."""
    out = []
    for path in sorted((root / "scripts").glob("*.py")):
        where = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.Import):
                pairs = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                pairs = [(node.module or "", alias.name) for alias in node.names]
            else:
                continue
            for module, name in pairs:
                if module != PACKAGE and not module.startswith(PACKAGE + "."):
                    continue
                hidden = _private_module(module[len(PACKAGE) + 1 :])
                if hidden and hidden not in SHARED_PRIVATE:
                    out.append(f"{where}:{node.lineno}: imports the private module {module}")
                elif name and _private(name):
                    out.append(
                        f"{where}:{node.lineno}: imports the private name {name} from {module}"
                    )
    return out


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    a = fn.args
    every = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
    return {p.arg for p in every if p is not None} - {"self", "cls"}


def _message_head(call: ast.Call) -> str:
    """The literal text an error message starts with (up to its first placeholder)."""
    if not call.args:
        return ""
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    if isinstance(first, ast.JoinedStr) and first.values:
        head = first.values[0]
        return head.value if isinstance(head, ast.Constant) else ""
    return ""


#: the start of a message about an argument: "steps must be ...", "tile must be ...", "init has"
ARGUMENT_HEAD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) (?:must|has|is|needs|should)\b")
#: a hand-written integer check: ``isinstance(x, bool) ... isinstance(x, int)`` in one test
INTEGER_WORDS = re.compile(r"\binteger\b.*(?:>=|<=|\.\.)|must be an integer")


def argument_error_violations(modules: dict[str, Module]) -> list[str]:
    """An error message below the CLI that starts with one of its function's parameters,
    written out (``f"steps must be ..."``) instead of marked with ``errors.arg`` (which the CLI
    shows as the flag); and an integer check written by hand instead of ``errors.integer``."""
    out = []
    for m in modules.values():
        if not m.name or layer(m.name) is None or layer(m.name) >= CLI_LAYER:
            continue
        for fn in ast.walk(m.tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            params = _params(fn)
            for node in ast.walk(fn):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                head = ARGUMENT_HEAD.match(_message_head(node.exc))
                if head and head.group(1) in params:
                    out.append(
                        f"{m.where}:{node.lineno}: {m.name}.{fn.name} names the argument "
                        f"{head.group(1)!r} without errors.arg"
                    )
        if m.name == "errors":
            continue
        for node in ast.walk(m.tree):
            if isinstance(node, ast.BoolOp):
                kinds = {
                    ast.unparse(c.args[1])
                    for c in node.values
                    for c in [c.operand if isinstance(c, ast.UnaryOp) else c]
                    if isinstance(c, ast.Call)
                    and ast.unparse(c.func) == "isinstance"
                    and len(c.args) == 2
                }
                if "bool" in kinds and kinds & {"int", "numbers.Integral", "(int, np.integer)"}:
                    out.append(
                        f"{m.where}:{node.lineno}: {m.name} checks an integer by hand; "
                        "use errors.integer"
                    )
        for node in _strings(m.tree):
            if INTEGER_WORDS.search(node.value):
                out.append(
                    f"{m.where}:{node.lineno}: {m.name} words an integer error; use errors.integer"
                )
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


#: a function's body (its docstring and signature not counted) may be this long
MAX_FUNCTION_LINES = 60
#: argument tables: functions that only declare command-line options
ARGUMENT_TABLES = {"add_parser", "add_arguments"}


def long_functions(modules: dict[str, Module], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions whose body, past the docstring, runs over ``limit`` lines."""
    found = []
    for m in modules.values():
        for node in ast.walk(m.tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if node.name in ARGUMENT_TABLES:
                continue
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:] or body  # the docstring is not code
            lines = body[-1].end_lineno - body[0].lineno + 1
            if lines > limit:
                found.append(f"{m.where}:{node.lineno}: {node.name} has {lines} lines of code")
    return sorted(found)


def test_no_function_is_longer_than_60_lines():
    assert not (found := long_functions(find_modules())), _report(found)


def test_the_length_rule_counts_code_not_docstrings(tmp_path):
    doc = '    """' + "doc\n" * 80 + '"""\n'
    code = "".join(f"    x{i} = {i}\n" for i in range(61))
    files = {"a.py": "def short():\n" + doc + "    return 1\n", "b.py": "def long():\n" + code}
    files["commands/c.py"] = "def add_parser(sub):\n" + code
    _write(tmp_path, files)
    assert long_functions(find_modules(tmp_path)) == ["dreamviz/b.py:1: long has 61 lines of code"]


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


def test_no_command_is_named_below_the_cli():
    assert not (found := command_text_violations(find_modules())), _report(found)


#: known violations in files that another change in progress owns (issue 20): the start of
#: each message. Remove an entry when its file is fixed; an entry that matches nothing fails.
PENDING = {
    "scripts/eval_saliency.py:34: imports the private module dreamviz._lite0",
}


def _not_pending(found: list[str]) -> list[str]:
    return [v for v in found if not any(v.startswith(p) for p in PENDING)]


def test_pending_violations_are_still_there():
    found = script_private_violations() + argument_error_violations(find_modules())
    stale = [p for p in PENDING if not any(v.startswith(p) for v in found)]
    assert not stale, f"fixed: remove from PENDING: {stale}"


def test_scripts_import_no_private_name():
    assert not (found := _not_pending(script_private_violations())), _report(found)


def test_argument_errors_go_through_errors_arg_and_integer():
    found = _not_pending(argument_error_violations(find_modules()))
    assert not found, _report(found)


#: the home of display and results runs no model: it reaches neither models nor hooks (the
#: function that makes a result runs the model and hands over what it saw)
NO_MODEL = {"display", "results"}


def test_display_and_results_run_no_model():
    modules = find_modules()
    found = [
        f"{m.where}:{imp.node.lineno}: {m.name} imports {imp.module}"
        for m in modules.values()
        if m.name in NO_MODEL
        for imp in imports(m, modules)
        if imp.module in ("models", "hooks")
        or layer(imp.module) not in (0, 1, 2)
        and imp.module not in NO_MODEL | {"visualize"}
    ]
    assert not found, _report(found)


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
            "__init__.py": "from .engine import render\nfrom .commands import render as r\n",
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
                "def g(steps, lr):\n"
                '    """See `dreamviz render` (a docstring may name a command)."""\n'
                "    if isinstance(steps, bool) or not isinstance(steps, int):\n"
                '        raise UsageError(f"steps must be an integer >= 1, got {steps}")\n'
                "    raise UsageError(f\"{arg('lr')} must be > 0; see `dreamviz render`\")\n"
            ),
            "param.py": "import dreamviz._lite0\nfrom dreamviz.models import _x\n",
            "gallery/__init__.py": "from . import page\nfrom ._html import X\n",
            "gallery/page.py": "from ..commands.render import SETTINGS\nfrom . import _html\n",
            "gallery/_html.py": "",
            "commands/__init__.py": "from .. import engine\n",
            "commands/render.py": "from . import parent\nflag = '--lr'\n",
            "cli.py": (
                "from .commands import render\nfrom . import render as f\n"
                'COMMANDS = ["render"]\nx = "dreamviz render, a command line may name it"\n'
            ),
            "hooks.py": "from . import UsageError\n",
            "newthing.py": "",
        },
    )
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "bench.py").write_text(
        "import dreamviz\nfrom dreamviz import render\nfrom dreamviz._version import __version__\n"
        "from dreamviz._lite0 import STAGES\nimport dreamviz.gallery._html\n"
        "from dreamviz.models import _x\nfrom ._local import y\n"
    )
    modules = find_modules(tmp_path)
    assert unplaced(modules) == ["dreamviz/newthing.py: newthing is in no layer"]
    assert layer_violations(modules) == [
        "dreamviz/__init__.py:2: the package imports commands.render (the command line); put "
        "what both need in a low module",
        "dreamviz/cli.py:2: cli (layer 7) imports dreamviz (the facade) (layer 8)",
        "dreamviz/gallery/page.py:1: gallery.page (layer 5) imports commands.render (layer 7)",
        "dreamviz/hooks.py:1: hooks (layer 2) imports dreamviz (the facade) (layer 8)",
        "dreamviz/io.py:1: io (layer 1) imports models (layer 1)",
    ]
    assert flag_violations(modules) == ["dreamviz/engine.py:4: engine names --lr"]
    assert command_text_violations(modules) == [
        "dreamviz/engine.py:9: engine names the command 'dreamviz render'"
    ]
    assert argument_error_violations(modules) == [
        "dreamviz/engine.py:8: engine.g names the argument 'steps' without errors.arg",
        "dreamviz/engine.py:7: engine checks an integer by hand; use errors.integer",
        "dreamviz/engine.py:8: engine words an integer error; use errors.integer",
    ]
    assert script_private_violations(tmp_path) == [
        "scripts/bench.py:4: imports the private module dreamviz._lite0",
        "scripts/bench.py:5: imports the private module dreamviz.gallery._html",
        "scripts/bench.py:6: imports the private name _x from dreamviz.models",
    ]
    assert private_violations(modules) == [
        "dreamviz/engine.py:1: engine imports the private name _seeds from param",
        "dreamviz/param.py:1: param imports the private module _lite0",
        "dreamviz/param.py:2: param imports the private name _x from models",
    ]
