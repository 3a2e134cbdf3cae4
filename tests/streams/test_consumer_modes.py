"""streams.kafka.consumer: what each kind of reader asks the broker for (no broker needed)."""

from __future__ import annotations

from typing import cast

import pytest
from aiokafka import AIOKafkaProducer

from gateway import webhooks
from processors import completion
from streams import kafka
from streams.settings import Settings

SETTINGS = Settings(topic_prefix="unit.", kafka_fetch_max_wait_ms=20)


def _fetch(consumer: object) -> tuple[int, int, str]:
    return (
        consumer._fetch_min_bytes,  # type: ignore[attr-defined]
        consumer._fetch_max_wait_ms,  # type: ignore[attr-defined]
        consumer._isolation_level,  # type: ignore[attr-defined]
    )


async def test_each_mode_asks_for_what_its_reader_needs() -> None:
    # A platform consumer: any record at once, an empty fetch held for the idle wait.
    assert _fetch(kafka.consumer(SETTINGS, group_id=None)) == (1, kafka.IDLE_FETCH_MAX_WAIT_MS, "read_committed")
    # Someone waits on it: the short wait.
    assert _fetch(kafka.consumer(SETTINGS, group_id=None, interactive=True)) == (1, 20, "read_committed")
    # Nobody waits on one record: a megabyte or the idle wait, whichever comes first.
    assert _fetch(kafka.consumer(SETTINGS, group_id=None, batch_wait_ms=kafka.IDLE_FETCH_MAX_WAIT_MS)) == (
        kafka.BATCHED_FETCH_MIN_BYTES,
        kafka.IDLE_FETCH_MAX_WAIT_MS,
        "read_committed",
    )
    assert _fetch(kafka.consumer(SETTINGS, group_id=None, transactional_input=False))[2] == "read_uncommitted"


async def test_the_webhook_dispatcher_reads_results_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, object]] = []

    def consumer(settings: Settings, *topics: str, **kwargs: object) -> object:
        made.append({"topics": topics, **kwargs})
        raise RuntimeError("stop here")

    monkeypatch.setattr(kafka, "consumer", consumer)  # the module webhooks.py calls it through
    dispatcher = webhooks.WebhookDispatcher(SETTINGS, producer=None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="stop here"):
        await dispatcher.run()
    assert made == [
        {
            "topics": (),  # subscribed afterwards, with its rebalance listener (8eb922b)
            "group_id": dispatcher.group_id,
            "from_beginning": True,
            "batch_wait_ms": kafka.IDLE_FETCH_MAX_WAIT_MS,
        }
    ]


@pytest.mark.parametrize("fed", [False, True])
async def test_the_completion_reads_in_batches_only_when_an_executor_here_hands_it_results(
    monkeypatch: pytest.MonkeyPatch, fed: bool
) -> None:
    made: list[dict[str, object]] = []

    def consumer(settings: Settings, *topics: str, **kwargs: object) -> object:
        made.append(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(kafka, "consumer", consumer)
    stage = completion.Completion(SETTINGS)
    if fed:  # what processors/express.py's connect does when an executor here hands it results
        stage.express_producer = cast(AIOKafkaProducer, object())  # never used: the run stops first
    with pytest.raises(RuntimeError, match="stop here"):
        await stage.run()
    # Fed, the results of runs that end alone come in process; the rest may wait the batch's wait.
    assert made[0]["batch_wait_ms"] == (completion.EXPRESS_FED_FETCH_WAIT_MS if fed else None)
    assert made[0]["transactional_input"] is False
