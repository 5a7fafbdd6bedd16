"""The layering is a contract: `pipeline/` never imports the flows, Prefect or the developer
tools, backends never import the layers above them, and the report never imports the editing
engine (the contracts are in `.importlinter`; lazy imports inside functions count too)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORCHESTRATION = re.compile(r"prefect|from flows|import flows")


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.is_file(), f"{lint_imports} is missing: pip install 'import-linter>=2.1'"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_library_does_not_mention_the_orchestration() -> None:
    """Nothing in `pipeline/` names Prefect or `flows`, not even in a string or a comment."""
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "pipeline").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if ORCHESTRATION.search(line)
    ]
    assert not found, "\n".join(found)
