"""The house's layering rules, read from the source: a defense's data logic is plain Python over rows, never a
model stage, so that it can be read, tested and reused without torch or a fine-tune."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "poison2poison"
DEFENSES = PACKAGE / "defenses"
MODEL_STAGES = {"torch", "transformers", "peft", "training", "inference", "models"}
"""What data logic never imports: the numeric framework, and the package's own model stages."""
NOT_DATA_LOGIC = {
    "runner.py": "runs a defense: screening, reference fine-tunes and the inference-time guard on the trained model",
    "screening.py": "fits a short reference model to score each row",
    "dece.py": "a training loss, written in torch",
}
"""The files of defenses/ that are model stages by design, and why."""


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, by its last dotted part and its first (`..training` -> training)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            parts = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = [node.module or ""] + ([alias.name for alias in node.names] if not node.module else [])
        else:
            continue
        for part in filter(None, parts):
            names.update({part.split(".")[0], part.split(".")[-1]})
    return names


DATA_LOGIC = sorted(p for p in DEFENSES.glob("*.py") if p.name not in NOT_DATA_LOGIC)


def test_the_exempt_files_exist() -> None:
    assert {p.name for p in DEFENSES.glob("*.py")} >= set(NOT_DATA_LOGIC)


@pytest.mark.parametrize("path", DATA_LOGIC, ids=lambda p: p.name)
def test_defense_data_logic_never_imports_a_model_stage(path: Path) -> None:
    assert not imported_modules(path) & MODEL_STAGES, f"{path.name} imports {imported_modules(path) & MODEL_STAGES}"


@pytest.mark.parametrize("stage", ["training.py", "inference.py"])
def test_training_and_inference_never_import_the_defenses(stage: str) -> None:
    assert "defenses" not in imported_modules(PACKAGE / stage)
