"""The topic catalog's configs (pure)."""

from __future__ import annotations

from dataclasses import replace

from streams.settings import Settings
from streams.topics import CATALOG, EVENTS, VALIDATION_SEEN


def test_the_seen_ids_expire_with_the_dedupe_window_and_nothing_else_changes() -> None:
    settings = replace(Settings(), dedupe_window_s=3600)
    seen = VALIDATION_SEEN.for_settings(settings).configs()
    assert (seen["cleanup.policy"], seen["retention.ms"]) == ("compact,delete", "3600000")
    assert EVENTS.for_settings(settings).configs() == EVENTS.configs()
    assert EVENTS.configs()["cleanup.policy"] == "compact" and EVENTS.configs()["retention.ms"] == "-1"
    assert [spec.for_settings(settings) == spec for spec in CATALOG].count(False) == 1
