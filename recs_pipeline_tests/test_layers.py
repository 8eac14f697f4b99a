"""The layering rule: ``core/`` and ``adapters/`` import neither Dagster nor the assets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "recs_pipeline"
FORBIDDEN = ("dagster", "dagster_aws", "dagster_postgres", "recs_pipeline.assets")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


@pytest.mark.parametrize("layer", ["core", "adapters"])
def test_pure_layers_import_no_dagster_and_no_assets(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no module under {layer}/"
    offending = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in files
        for name in _imports(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN)
    ]
    assert not offending, offending


def test_the_rule_would_catch_an_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import dagster as dg\nfrom recs_pipeline.assets.common import key\n")
    assert _imports(module) == ["dagster", "recs_pipeline.assets.common"]
