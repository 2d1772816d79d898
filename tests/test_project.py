"""The README's promises: its first lines are the two commands, and CI runs the second."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_requirements_admit_the_local_torch():
    text = (ROOT / "pyproject.toml").read_text()
    torch_req = re.search(r'"torch([^"]*)"', text).group(1)
    tv_req = re.search(r'"torchvision([^"]*)"', text).group(1)
    from packaging.specifiers import SpecifierSet

    assert "2.14.1" in SpecifierSet(torch_req)
    assert "0.29.1" in SpecifierSet(tv_req)
