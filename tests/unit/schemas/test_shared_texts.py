"""Decoders hand out one string per distinct value of the fields whose values repeat (a shop's
id, a user agent, a landing page), exec'd and compiled alike, and a field's pool is bounded:
values past its limit are decoded as usual, equal and never pooled."""

from __future__ import annotations

import pytest

from refstream.schemas.avro_compiled import SHARED_TEXTS_LIMIT, shared_text
from refstream.schemas.codec import Codec
from refstream.schemas.events import Click
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.shop import ShopClick
from tests.conformance.samples import shop_events

CODECS = [pytest.param(Codec(schema_compiled=False), id="exec'd"),
          pytest.param(Codec(), id="as built")]


def click(tag: str) -> ShopClick:
    (event,) = [e for e in shop_events(tag=tag) if isinstance(e, ShopClick)]
    return event


@pytest.mark.parametrize("codec", CODECS)
def test_repeated_values_of_shared_fields_decode_to_one_string(codec: Codec) -> None:
    # Two records written apart: equal values arrive as separate bytes.
    _, first = codec.decode_record(codec.encode(click("a")))
    _, second = codec.decode_record(codec.encode(click("b")))
    for field in ("shop_id", "user_agent", "landing_url", "utm_source", "event_type"):
        assert first[field] == second[field] and first[field] is second[field], field
    # Fields whose values are mostly unique are not pooled.
    assert first["visitor_id"] == second["visitor_id"]
    assert first["visitor_id"] is not second["visitor_id"]
    # The canonical log's decoders too (the pipeline's, when it decodes).
    pseudonymiser = Pseudonymiser(b"k" * 32)
    one, two = (codec.decode_log_event(codec.encode(pseudonymiser.to_log_event(click(tag))))
                for tag in ("a", "b"))
    assert isinstance(one, Click) and isinstance(two, Click)
    assert one.shop_id is two.shop_id and one.user_agent is two.user_agent
    assert one.event_id != two.event_id


def test_a_pool_stops_growing_at_its_limit_and_still_returns_equal_text() -> None:
    pool: dict[str, str] = {}
    kept = [shared_text(pool, "".join(["ua-", str(n)])) for n in range(SHARED_TEXTS_LIMIT)]
    assert len(pool) == SHARED_TEXTS_LIMIT
    again = "".join(["ua-", "7"])
    assert shared_text(pool, again) is kept[7]  # pooled: the first copy comes back
    late = "".join(["ua-", "late"])
    assert shared_text(pool, late) is late and len(pool) == SHARED_TEXTS_LIMIT
    other = "".join(["ua-", "late"])
    assert shared_text(pool, other) is other  # past the limit: never pooled
