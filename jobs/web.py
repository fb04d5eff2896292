"""The front door's jobs: run the HTTP edge, issue and revoke links from the command line,
deliver reward webhooks and show their log."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refstream.rewards.rules import Rules
from refstream.schemas.errors import RefstreamError
from refstream.streams.exit_codes import EXIT_OK
from refstream.streams.settings import Settings

if TYPE_CHECKING:
    from refstream.web.frontdoor import FrontDoor


class _ReportedStartError(logging.Filter):
    """Holds back uvicorn's log of a start that failed for a reason the command reports."""

    def __init__(self, door: FrontDoor) -> None:
        super().__init__()
        self.door = door

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(self.door.start_error, RefstreamError)
                    and record.getMessage().startswith("Traceback"))


def serve(settings: Settings, rules: Rules, *, loglevel: str, proxy_headers: bool,
          forwarded_allow_ips: str) -> int:
    """The ASGI app on uvicorn until stopped."""
    import uvicorn

    from refstream.web.app import create_app

    app = create_app(settings, rules)
    where = (f"shop topics on {settings.kafka_bootstrap}" if settings.web_publish_to == "kafka"
             else f"event log {settings.web_event_log} (fold it: refstream run --events "
                  f"{settings.web_event_log} --db {settings.web_snapshot})")
    print(f"refstream serve on http://{settings.web_host}:{settings.web_port} "
          f"(public {settings.web_public_url}); events -> {where}", file=sys.stderr, flush=True)
    # uvicorn's Config and Server (what uvicorn.run builds), so that a start that failed for a
    # reason refstream reports itself (the broker did not answer: exit code 4) ends with that
    # reason and code instead of uvicorn's traceback and its own exit code 3.
    config = uvicorn.Config(app, host=settings.web_host, port=settings.web_port,
                            log_level=loglevel, access_log=False, proxy_headers=proxy_headers,
                            forwarded_allow_ips=forwarded_allow_ips)
    reported = _ReportedStartError(app.door)
    logging.getLogger("uvicorn.error").addFilter(reported)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn's way of ending a start that failed
        if server.started:
            raise
        if isinstance(app.door.start_error, RefstreamError):
            raise app.door.start_error from None
        raise RefstreamError(f"the web server did not start on {settings.web_host}:"
                             f"{settings.web_port} (its log above says why)") from None
    return EXIT_OK


def issue_link(settings: Settings, rules: Rules, *, shop: str, referrer: str,
               campaign: str | None, qr_dir: Path | None, status_link: bool, fmt: str) -> int:
    """Issue (or show) a referrer's code and link; IssueError (exit 1) when the campaign is
    not open to the referrer."""
    from refstream.web.frontdoor import FrontDoor
    from refstream.web.publishing import publisher_from_settings
    from refstream.web.qr import qr_png, qr_svg
    from refstream.web.registry import Registry

    registry = Registry(settings.web_registry)
    door = FrontDoor(settings, rules, registry, publisher_from_settings(settings))

    async def issue() -> dict[str, Any]:
        await door.publisher.start()
        try:
            issued, new = await door.issue(shop, referrer, campaign)
        finally:
            await door.publisher.stop()
        result: dict[str, Any] = {"code": issued.code, "campaign_id": issued.campaign_id,
                                  "link": door.link(issued), "issued_now": new}
        if qr_dir is not None:
            qr_dir.mkdir(parents=True, exist_ok=True)
            qr_link = door.link(issued, "qr")
            (qr_dir / f"{issued.code}.svg").write_bytes(qr_svg(qr_link))
            (qr_dir / f"{issued.code}.png").write_bytes(qr_png(qr_link))
            result["qr"] = [str(qr_dir / f"{issued.code}.svg"), str(qr_dir / f"{issued.code}.png")]
        if status_link:
            secret = registry.new_status_secret(shop, referrer, door.clock())
            result["status_url"] = f"{settings.web_public_url.rstrip('/')}/s/{secret}"
        return result

    try:
        result = asyncio.run(issue())
    finally:
        registry.close()
    if fmt == "json":
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:11} {value}")
    return EXIT_OK


def revoke_links(settings: Settings, *, shop: str, referrer: str) -> int:
    """Revoke every status link of a referrer."""
    from refstream.web.frontdoor import wall_clock_ms
    from refstream.web.registry import Registry

    registry = Registry(settings.web_registry)
    try:
        revoked = registry.revoke_status_secrets(shop, referrer, wall_clock_ms())
    finally:
        registry.close()
    print(f"revoked {revoked} status link(s) of {referrer} at {shop}")
    return EXIT_OK


def deliver_webhooks(settings: Settings, *, source: str, group: str,
                     idle_exit: float | None) -> int:
    """The webhook delivery worker, from Kafka's reward-due or the published snapshot."""
    from refstream.web.webhooks import (
        Outbox,
        WebhookConfigError,
        deliverer_from_settings,
        run_from_kafka,
        run_from_snapshot,
    )

    if not settings.webhook_endpoints:
        raise WebhookConfigError("no endpoints; set REFSTREAM_WEBHOOK_ENDPOINTS (JSON: "
                                 '{"shop-1": "https://..."}) and REFSTREAM_WEBHOOK_SECRETS')
    outbox = Outbox(settings.webhook_outbox)
    try:
        deliverer = deliverer_from_settings(settings, outbox)
        if source == "kafka":
            from kafka import KafkaConsumer

            from refstream.schemas.codec import Codec
            from refstream.streams.topics import TopicNames

            consumer = KafkaConsumer(
                TopicNames.from_settings(settings).reward_due,
                bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                enable_auto_commit=False, auto_offset_reset="earliest",
                bootstrap_timeout_ms=int(settings.client_timeout_s * 1000),
                **settings.kafka_security())
            try:
                run_from_kafka(consumer, outbox, deliverer, Codec(), idle_exit_s=idle_exit)
            finally:
                consumer.close()
        else:
            run_from_snapshot(settings.web_snapshot, outbox, deliverer, idle_exit_s=idle_exit)
    finally:
        outbox.close()
    return EXIT_OK


def webhook_log(settings: Settings, *, attempts: bool) -> int:
    """Print the deliveries (or every attempt) as TSV."""
    from refstream.web.webhooks import Outbox

    outbox = Outbox(settings.webhook_outbox)
    try:
        rows = outbox.attempts() if attempts else outbox.deliveries()
    finally:
        outbox.close()
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
    return EXIT_OK
