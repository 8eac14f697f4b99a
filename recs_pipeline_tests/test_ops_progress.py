"""The long steps say where they are: ranker_model and recommendation_evaluation log progress
lines (anchors built, boosting rounds, validation and evaluation slots, with counts and elapsed
seconds) into the run's event log, at most every RECS_PROGRESS_SECONDS (10 by default)."""

from __future__ import annotations

import itertools
import re

import pytest

from recs_pipeline.core.progress import Progress
from recs_pipeline_tests.conftest import Materialised


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_are_throttled_by_their_own_clock() -> None:
    lines: list[str] = []
    clock = FakeClock()
    steps = Progress(
        lines.append, "site day ranker", total=12, unit="anchors", every=10, clock=clock
    )
    for done in range(1, 13):
        clock.now += 4.0  # a unit of work takes 4 s: a line every third unit
        steps.step(done, "detail")
    assert lines == [
        "site day ranker: 3/12 anchors detail (12.0 s)",
        "site day ranker: 6/12 anchors detail (24.0 s)",
        "site day ranker: 9/12 anchors detail (36.0 s)",
        "site day ranker: 12/12 anchors detail (48.0 s)",
    ]
    steps.say("done")  # said whatever the time since the last line
    assert lines[-1] == "site day ranker: done (48.0 s)"
    Progress(None, "quiet").step(1)  # no log: nothing to call


def test_a_run_of_the_long_steps_logs_their_progress(
    materialised: Materialised, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECS_PROGRESS_SECONDS", "0")  # every unit, so a small site shows all
    day = materialised.generated.days[-1]
    result = materialised.run([day], selection="ranker_model,recommendation_evaluation")
    assert result.success
    name = materialised.site.name
    entries = [
        entry
        for entry in materialised.instance.all_logs(result.run_id)
        if entry.user_message.startswith(f"{name} {day} ")
    ]
    ranker = [e for e in entries if e.step_key and e.step_key.endswith("ranker_model")]
    evaluation = [
        e for e in entries if e.step_key and e.step_key.endswith("recommendation_evaluation")
    ]
    ranker_text = "\n".join(e.user_message for e in ranker)
    evaluation_text = "\n".join(e.user_message for e in evaluation)
    slots = materialised.site.models.ranker.training_slots
    assert re.search(
        rf"ranker: {slots} of {slots} training anchors built \([\d,]+ candidate rows", ranker_text
    )
    assert re.search(r"ranker: fitting 20 trees on [\d,]+ rows", ranker_text)
    assert re.search(r"ranker: 20 of 20 boosting rounds \(\d+\.\d s\)", ranker_text)
    assert re.search(r"ranker: 2 of 2 validation slots \([\d,]+ readers\)", ranker_text)
    assert re.search(
        r"evaluation: 1 of 1 next-day slots scored \([\d,]+ test readers", evaluation_text
    )
    assert re.search(
        r"evaluation: 12 of 12 2-hour slots scored \([\d,]+ test readers", evaluation_text
    )
    # Consecutive lines of a step are close together (here each unit is far below 10 s).
    for lines in (ranker, evaluation):
        stamps = [entry.timestamp for entry in lines]
        assert len(stamps) >= 5
        assert max(b - a for a, b in itertools.pairwise(stamps)) < 10.0
