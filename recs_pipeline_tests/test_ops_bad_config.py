"""Bad site files: one paragraph naming the file (and line, column or field), no traceback, for
the `recs` CLI and for the code location; one bad file never takes the other sites down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from recs_pipeline.core.site import SiteConfigError, load_site, load_sites, read_sites
from recs_pipeline.definitions import BROKEN_GROUP, load_definitions

BIN = Path(sys.executable).parent
GOOD = "name: good\nstart_date: 2026-11-01\nevents: {format: snowplow, location: /tmp/x}\n"
# Line 3: the flow mapping is never closed.
SYNTAX = (
    "name: syn\nstart_date: 2026-11-01\nevents: {format: snowplow, location: x\n"
    "models:\n  als: {factors: 8}\n"
)
FIELD = (
    "name: fld\nstart_date: 2026-11-01\nevents:\n  format: snowplw\n  location: x\n"
    "models:\n  als:\n    factors: many\n"
)


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    folder = tmp_path / "sites"
    folder.mkdir()
    (folder / "good.yaml").write_text(GOOD)
    (folder / "syntax.yaml").write_text(SYNTAX)
    (folder / "field.yaml").write_text(FIELD)
    (folder / "twin.yaml").write_text(GOOD)  # declares `good` a second time
    return folder


def test_a_yaml_syntax_error_is_one_paragraph_with_file_line_and_column(sites: Path) -> None:
    with pytest.raises(SiteConfigError) as raised:
        load_site(sites / "syntax.yaml", {})
    text = str(raised.value)
    assert text.startswith(f"{sites / 'syntax.yaml'}: line 4, column 7: YAML syntax error")
    assert "\n" not in text
    assert raised.value.name == "syn"  # matched by the name the file seems to declare


def test_bad_fields_are_named_with_their_lines_in_one_paragraph(sites: Path) -> None:
    with pytest.raises(SiteConfigError) as raised:
        load_site(sites / "field.yaml", {})
    text = str(raised.value)
    assert text.startswith(f"{sites / 'field.yaml'}: 2 fields are wrong: ")
    assert "field `events.format` (line 4, column 11)" in text
    assert "field `models.als.factors` (line 8, column 14)" in text
    assert "\n" not in text and raised.value.name == "fld"


def test_one_bad_file_keeps_the_other_sites(sites: Path) -> None:
    files = read_sites(sites, {})
    assert [site.name for site in files.sites] == ["good"]
    assert sorted(error.path.name for error in files.broken) == [
        "field.yaml",
        "syntax.yaml",
        "twin.yaml",
    ]
    twin = files.broken_named("good")
    assert twin is not None and "as " + str(sites / "good.yaml") in str(twin)
    with pytest.raises(SiteConfigError, match=r"field\.yaml"):
        load_sites(sites, {})  # the strict loader still refuses


def test_the_code_location_loads_the_good_sites_and_shows_the_broken_ones(sites: Path) -> None:
    definitions = load_definitions(sites)
    graph = definitions.get_repository_def().asset_graph
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert "good/raw_events" in keys and "good/published_recommendations" in keys
    assert not any(key.startswith(("syn/", "fld/")) for key in keys)
    broken = {key for key in keys if key.startswith(f"{BROKEN_GROUP}/")}
    assert broken == {f"{BROKEN_GROUP}/field", f"{BROKEN_GROUP}/syntax", f"{BROKEN_GROUP}/twin"}
    node = graph.get(dg.AssetKey([BROKEN_GROUP, "syntax"]))
    assert node.group_name == BROKEN_GROUP
    assert "YAML syntax error" in (node.description or "")
    assert str(sites / "syntax.yaml") in str(node.metadata["error"].value)

    # The placeholder's check fails with the error, when run and when the sensor records it.
    check_job = dg.define_asset_job(
        "broken_checks",
        selection=dg.AssetSelection.checks_for_assets(
            *(dg.AssetKey.from_user_string(k) for k in broken)
        ),
    )
    with_job = dg.Definitions.merge(definitions, dg.Definitions(jobs=[check_job]))
    with dg.instance_for_test() as instance:
        result = with_job.resolve_job_def("broken_checks").execute_in_process(instance=instance)
        evaluations = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
        assert set(evaluations) == {"field", "syntax", "twin"}
        assert not any(e.passed for e in evaluations.values())
        assert "models.als.factors" in (evaluations["field"].description or "")

        sensor = definitions.get_sensor_def("recs_broken_site_files")
        first = sensor(dg.build_sensor_context(instance=instance, definitions=definitions))
        assert isinstance(first, dg.SensorResult) and len(first.asset_events) == 3
        again = sensor(
            dg.build_sensor_context(instance=instance, definitions=definitions, cursor=first.cursor)
        )
        assert isinstance(again, dg.SensorResult) and not again.asset_events
    (sites / "field.yaml").unlink()
    (sites / "syntax.yaml").unlink()
    (sites / "twin.yaml").unlink()
    clean = load_definitions(sites)
    clean_keys = clean.get_repository_def().asset_graph.get_all_asset_keys()
    assert not any(key.path[0] == BROKEN_GROUP for key in clean_keys)
    with pytest.raises(Exception, match="recs_broken_site_files"):
        clean.get_sensor_def("recs_broken_site_files")


def _run(args: list[str], sites: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RECS_SITES_DIR": str(sites),
        "RECS_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path),
    }
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(
        args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )


def test_dagster_and_recs_report_bad_files_without_a_traceback(sites: Path, tmp_path: Path) -> None:
    validate = _run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "recs_pipeline.definitions"],
        sites,
        tmp_path,
    )
    assert validate.returncode == 0, validate.stderr[-3000:]
    output = validate.stdout + validate.stderr
    assert f"site file skipped: {sites / 'syntax.yaml'}: line 4, column 7" in output
    assert "Traceback" not in output

    listed = _run([str(BIN / "recs"), "sites"], sites, tmp_path)
    assert listed.returncode == 1
    assert listed.stdout.startswith("good: snowplow events from /tmp/x\n")
    assert f"BROKEN {sites / 'field.yaml'}: 2 fields are wrong" in listed.stdout

    refused = _run([str(BIN / "recs"), "summary", "--site", "syn"], sites, tmp_path)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: site 'syn' cannot be used: {sites / 'syntax.yaml'}")
    # The other broken files are one warning line each; no traceback.
    assert sorted(line.split(":")[1].strip() for line in lines[:-1]) == [
        "site file skipped",
        "site file skipped",
    ]
    assert "Traceback" not in refused.stderr
