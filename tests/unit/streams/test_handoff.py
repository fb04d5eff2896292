"""The pipeline takes, by their bytes, the events ingest appended in the same process: what it
takes must be exactly what decoding those bytes gives, or live would differ from replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream.persistence.checkpoint import CheckpointStore
from refstream.schemas.codec import Codec
from refstream.schemas.events import LOG_EVENT_TYPES, LogEvent
from refstream.streams.handoff import AppendedEvents
from refstream.streams.pipeline_runtime import Applied, PipelineRuntime
from refstream.streams.topics import TopicNames
from tests.unit.core.builders import DEFAULT_RULES, ShopLog, when
from tests.unit.schemas.test_avro_compiled import records

CODEC = Codec()
NAMES = TopicNames("shop", "refstream")
LOG_VERSIONS = [CODEC.newest(CODEC.record_name(kind)) for kind in LOG_EVENT_TYPES.values()]


@pytest.mark.parametrize("version", LOG_VERSIONS, ids=lambda v: v.file_name)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_the_pipeline_takes_is_what_decoding_the_bytes_gives(
        version: Any, data: st.DataObject) -> None:
    event = CODEC.from_record(version.full_name, data.draw(records(version)))
    value = CODEC.encode(event)
    handoff = AppendedEvents()
    handoff.put(value, event)
    taken = handoff.take(value)
    decoded = CODEC.decode_log_event(value)
    assert decoded is not None
    assert type(taken) is type(decoded)
    assert taken == decoded
    assert CODEC.encode(taken) == CODEC.encode(decoded) == value
    assert handoff.take(value) is None  # taken once; read again, the bytes are decoded


def shop_log() -> list[LogEvent]:
    log = ShopLog()
    for n in range(6):
        log.share(f"alice{n}", f"R-alice{n}", at=when(0), campaign="friends")
        log.click(f"v-bob{n}", at=when(1), code=f"R-alice{n}", campaign_id="friends")
        log.signup(f"bob{n}", at=when(1, hours=1), visitor=f"v-bob{n}")
        log.order(f"o-bob{n}", f"bob{n}", 4000 + n, at=when(1, hours=2), visitor=f"v-bob{n}")
    log.tick(at=when(40))
    return list(log.events)


def outputs(runtime: PipelineRuntime, values: list[bytes]) -> list[bytes]:
    sent = []
    for offset, value in enumerate(values):
        decision = runtime.handle(0, offset, value)
        assert isinstance(decision, Applied)
        sent += [output.value for output in decision.outputs]
    return sent


def test_a_pipeline_given_the_appended_events_sends_the_same_bytes(tmp_path: Path) -> None:
    events = shop_log()
    values = [CODEC.encode(event) for event in events]
    handoff = AppendedEvents()
    for value, event in zip(values, events, strict=True):
        handoff.put(value, event)
    decoding = PipelineRuntime(DEFAULT_RULES, CODEC, CheckpointStore(tmp_path / "a.sqlite"),
                               NAMES)
    taking = PipelineRuntime(DEFAULT_RULES, CODEC, CheckpointStore(tmp_path / "b.sqlite"),
                             NAMES, handoff=handoff)
    expected = outputs(decoding, values)
    assert expected  # the log derives attributions and rewards
    assert outputs(taking, values) == expected
    assert len(handoff) == 0  # every event was taken, none decoded


def test_only_the_exact_bytes_find_their_event() -> None:
    share, other = shop_log()[:2]
    handoff = AppendedEvents()
    value = CODEC.encode(share)
    handoff.put(value, share)
    assert handoff.take(CODEC.encode(other)) is None
    assert handoff.take(value[:-1]) is None
    assert handoff.take(value) is share


def test_it_stays_bounded_when_the_pipeline_reads_none_of_it() -> None:
    events = shop_log()
    handoff = AppendedEvents(capacity=4)
    for event in events:
        handoff.put(CODEC.encode(event), event)
    assert len(handoff) <= 8
    assert handoff.take(CODEC.encode(events[0])) is None  # dropped with the older half
    assert handoff.take(CODEC.encode(events[-1])) is events[-1]
    with pytest.raises(ValueError, match="at least 1"):
        AppendedEvents(capacity=0)


@pytest.mark.parametrize(("with_ingest", "with_pipeline", "shared"), [
    (True, True, True), (False, True, False), (True, False, False)])
def test_only_a_worker_running_both_stages_hands_events_over(
        tmp_path: Path, with_ingest: bool, with_pipeline: bool, shared: bool) -> None:
    from refstream.streams.faust_app import build_app
    from refstream.streams.ingest_stage import IngestStage
    from refstream.streams.settings import Settings

    app = build_app(Settings(data_dir=tmp_path), DEFAULT_RULES, with_ingest=with_ingest,
                    with_pipeline=with_pipeline)
    runtime = getattr(app, "refstream_runtime", None)
    # The services the app starts with itself (mode keeps them in `_children`; read only).
    ingest = [s for s in app._children if isinstance(s, IngestStage)]
    handoffs = [*(s.handoff for s in ingest), *([runtime.handoff] if runtime else [])]
    if shared:
        assert len(handoffs) == 2 and handoffs[0] is handoffs[1] is not None
    else:
        assert handoffs == [None]
