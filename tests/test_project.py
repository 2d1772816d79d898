"""The README's promises: its first lines are the two commands, and CI runs the second; the
requirements admit the torch that is installed."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _first_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index("```bash") < 40, "the README must open with the commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_main_job_and_test_commands():
    main_job, test_cmd = _first_block()
    assert "pip install -e ." in main_job and "dreamviz render" in main_job
    assert "'.[test]'" in test_cmd and "pytest" in test_cmd


def test_ci_runs_the_readme_test_command_exactly():
    _, test_cmd = _first_block()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci
    assert any('"$rc" -eq 5' in line for line in ci), "pytest's 'no tests' must fail CI"


def _requirement(text: str, name: str) -> str:
    found = re.search(rf'"{name}([<>=!~,.\d\s*]*)"', text)
    assert found, f"pyproject.toml lists no {name} requirement"
    return found.group(1)


@pytest.mark.parametrize("package", ["torch", "torchvision"])
def test_requirements_admit_the_installed_torch(package):
    # pip install -e . must keep the torch build that is installed (a CUDA wheel, say), not
    # replace it: the requirement admits the version this environment actually has
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(_requirement((ROOT / "pyproject.toml").read_text(), package))
    installed = version(package)
    assert spec.contains(installed, prereleases=True), f"{package} {installed} is not {spec}"
