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


def test_asset_names_are_declared_once() -> None:
    """Asset names are spelled only in core/asset_names.py; elsewhere a literal of one is
    another thing of the same name (an event kind, a count, a function, a JSON key)."""
    import ast

    from recs_pipeline.core import asset_names
    from recs_pipeline.definitions import defs

    declared = set(asset_names.ALL)
    keys = {key.path[-1] for key in defs.resolve_all_asset_keys() if key.path[0] != "broken_sites"}
    assert keys == declared
    other_meaning = {
        ("core/events/common.py", "engagement"),  # the GA4 event kind
        ("core/events/ga4.py", "engagement"),
        ("core/engagement.py", "interactions"),  # a count
        ("core/popularity.py", "popular_articles"),  # the function's name in __all__
        ("core/similarity.py", "similar_articles"),
        ("serving/session_ranker.py", "session_ranker"),  # a params key, a validation row
        ("serving/app.py", "session_ranker"),  # the ranked_by value, a /readyz field
        ("assets/serving.py", "session_ranker"),  # the validation row, a metric
        ("serving/replay.py", "session_ranker"),  # the validation row
    }
    root = Path(asset_names.__file__).parents[1]
    spelled = set()
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if relative == "core/asset_names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in declared:
                spelled.add((relative, str(node.value)))
    assert spelled <= other_meaning, sorted(spelled - other_meaning)
