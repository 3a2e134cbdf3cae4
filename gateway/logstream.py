"""Live logs of one execution: sandbox.logs chunks turned into SSE events, resumable by Last-Event-ID.

`LogCursor` is pure: it says how far each stream of the current attempt has been sent, drops
what was already sent (duplicates, replays, overlap), and renders itself as the event id
"<attempt>.<stdout bytes>.<stderr bytes>". `follow` reads the one partition that holds the
execution's chunks, starting a little before it was created, and ends once the execution is
finished and that partition has been read up to its end.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition

from streams import kafka
from streams.codec import CodecError
from streams.records import LogChunk
from streams.settings import Settings
from streams.topics import Topics

Stream = Literal["stdout", "stderr"]
_ID = re.compile(r"([0-9]{1,9})\.([0-9]{1,15})\.([0-9]{1,15})")  # fullmatch; ASCII digits only
# How far before an execution's creation to start reading its partition (clock skew between hosts).
SEEK_SLACK_MS = 60_000
# How often a stream with no new output looks at its execution's state: the `end` event follows the
# end of the run by at most this much (was 200 ms; the run itself takes ~50 ms).
STATE_POLL_MS = 25


@dataclass(frozen=True, slots=True)
class Piece:
    """A new piece of output to send: text (UTF-8, undecodable bytes replaced) at a byte offset."""

    stream: Stream
    offset: int
    text: str


@dataclass(slots=True)
class LogCursor:
    attempt: int = 0
    sent: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    _decoders: dict[str, codecs.BufferedIncrementalDecoder] = field(default_factory=dict)

    @classmethod
    def parse(cls, last_event_id: str | None) -> LogCursor:
        """The cursor for a Last-Event-ID; a missing or foreign id starts from the beginning."""
        match = _ID.fullmatch((last_event_id or "").strip())
        if not match:
            return cls()
        return cls(int(match.group(1)), {"stdout": int(match.group(2)), "stderr": int(match.group(3))})

    @property
    def event_id(self) -> str:
        return f"{self.attempt}.{self.pending_end('stdout')}.{self.pending_end('stderr')}"

    def pending_end(self, stream: str) -> int:
        """Bytes of `stream` fully sent: what was fed, less a split UTF-8 character still held back."""
        decoder = self._decoders.get(stream)
        held = len(decoder.getstate()[0]) if decoder is not None else 0
        return self.sent[stream] - held

    def take(self, chunk: LogChunk) -> tuple[bool, Piece | None]:
        """(a new attempt began, the piece of `chunk` not sent yet, if any)."""
        new_attempt = False
        if chunk.attempt > self.attempt:
            if self.attempt != 0 or self.sent["stdout"] or self.sent["stderr"]:
                new_attempt = True
            self.attempt, self.sent, self._decoders = chunk.attempt, {"stdout": 0, "stderr": 0}, {}
        elif chunk.attempt < self.attempt:
            return False, None  # output of an attempt that was superseded
        start = self.sent[chunk.stream]
        end = chunk.offset + len(chunk.data)
        if end <= start or chunk.offset > start:
            # Already sent, or a gap (a lost chunk would leave one): skip rather than send garbled text.
            return new_attempt, None
        data = chunk.data[start - chunk.offset :]
        decoder = self._decoders.setdefault(chunk.stream, codecs.getincrementaldecoder("utf-8")("replace"))
        text = decoder.decode(data)
        self.sent[chunk.stream] = end
        return new_attempt, Piece(chunk.stream, start, text) if text else None


async def follow(
    settings: Settings,
    producer: AIOKafkaProducer,
    execution_id: str,
    since_ms: int,
    finished: Callable[[], bool],
) -> AsyncIterator[LogChunk | None]:
    """Every LogChunk of `execution_id`, in order, until `finished()` and the partition is read to its end.

    Yields None after a fetch that brought nothing, so the caller can look at the execution's state.
    """
    topic = Topics(settings.topic_prefix).logs
    tp = TopicPartition(topic, kafka.partition_among(execution_id, await producer.partitions_for(topic)))
    consumer = kafka.consumer(settings, group_id=None, interactive=True)  # someone watches
    try:
        await consumer.start()
        consumer.assign([tp])
        found = await consumer.offsets_for_times({tp: max(0, since_ms - SEEK_SLACK_MS)})
        where = found.get(tp)
        if where is None:
            await consumer.seek_to_end(tp)
        else:
            consumer.seek(tp, where.offset)
        key = execution_id.encode()
        end: int | None = None
        while True:
            batch = await consumer.getmany(tp, timeout_ms=STATE_POLL_MS, max_records=500)
            if not batch.get(tp):
                yield None
            for message in batch.get(tp, []):
                if message.key != key or message.value is None:
                    continue
                try:
                    yield LogChunk.decode(message.value)
                except (CodecError, ValueError, msgspec.ValidationError):
                    continue
            if end is None and finished():
                end = (await consumer.end_offsets([tp]))[tp]
            if end is not None and await consumer.position(tp) >= end:
                return
    finally:
        await asyncio.shield(consumer.stop())
