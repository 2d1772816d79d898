"""The README's promises: its first lines are the two commands, and CI runs the second; the
requirements admit the torch that is installed."""

from __future__ import annotations

import os
import re
from importlib.metadata import version
from pathlib import Path

import pytest

import dreamviz

ROOT = Path(__file__).resolve().parent.parent


def _first_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index("```bash") < 40, "the README must open with the commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_main_job_and_test_commands():
    main_job, test_cmd = _first_block()
    assert "pip install ." in main_job and "dreamviz render" in main_job
    assert "'.[test]'" in test_cmd and "pytest" in test_cmd
    # the wheel, not the checkout: no editable install, and pytest's own script (python -m
    # pytest would put the checkout first on sys.path)
    assert "-e" not in main_job.split() + test_cmd.split()
    assert ".venv/bin/pytest" in test_cmd and "-m pytest" not in test_cmd


def test_ci_tests_the_installed_wheel():
    """.ci/run sets DREAMVIZ_TEST_INSTALLED: there dreamviz must come from the installed wheel."""
    if not os.environ.get("DREAMVIZ_TEST_INSTALLED"):
        pytest.skip("only under .ci/run, which installs dreamviz from its wheel")
    path = Path(dreamviz.__file__).resolve()
    assert "site-packages" in path.parts, path  # the checkout's copy is ROOT/dreamviz


def test_ci_runs_the_readme_test_command_exactly():
    _, test_cmd = _first_block()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci
    assert any('"$rc" -eq 5' in line for line in ci), "pytest's 'no tests' must fail CI"


def test_package_data_lists_every_data_file():
    """Every file of the package that is not Python matches a package-data pattern of its
    package (setuptools globs), so the wheel carries it: a missing one breaks installs only."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]
    package_root = ROOT / "dreamviz"
    files = [
        p
        for p in package_root.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert any(p.name == "chelsea.jpg" for p in files)
    for path in files:
        # the package that owns the file: its nearest folder with an __init__.py
        owner = next(d for d in path.parents if (d / "__init__.py").is_file())
        name = ".".join(owner.relative_to(ROOT).parts)
        shipped = {q for pattern in patterns.get(name, []) for q in owner.glob(pattern)}
        assert path in shipped, f"{path.relative_to(ROOT)} is not in package-data[{name!r}]"


def _requirement(text: str, name: str) -> str:
    found = re.search(rf'"{name}([<>=!~,.\d\s*]*)"', text)
    assert found, f"pyproject.toml lists no {name} requirement"
    return found.group(1)


@pytest.mark.parametrize("package", ["torch", "torchvision"])
def test_requirements_admit_the_installed_torch(package):
    # pip install . must keep the torch build that is installed (a CUDA wheel, say), not
    # replace it: the requirement admits the version this environment actually has
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(_requirement((ROOT / "pyproject.toml").read_text(), package))
    installed = version(package)
    assert spec.contains(installed, prereleases=True), f"{package} {installed} is not {spec}"
