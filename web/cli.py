"""`refstream serve`, `refstream links` and `refstream webhooks`: parse, build the settings,
call one application function (registered into the main CLI by `streams/cli.py`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from refstream.streams.exit_codes import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from refstream.streams.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for arg, name in (("bootstrap", "kafka_bootstrap"), ("event_log", "web_event_log"),
                      ("registry", "web_registry"), ("snapshot", "web_snapshot"),
                      ("publish_to", "web_publish_to"), ("public_url", "web_public_url"),
                      ("host", "web_host"), ("port", "web_port"), ("outbox", "webhook_outbox")):
        value = getattr(args, arg, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def _rules(path: str | None) -> Any:
    from refstream.rewards.rules import default_rules_path, load_rules

    return load_rules(Path(path) if path else default_rules_path())


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from refstream.web.app import create_app

    settings = _settings(args)
    app = create_app(settings, _rules(args.rules))
    where = (f"shop topics on {settings.kafka_bootstrap}" if settings.web_publish_to == "kafka"
             else f"event log {settings.web_event_log} (fold it: refstream run --events "
                  f"{settings.web_event_log} --db {settings.web_snapshot})")
    print(f"refstream serve on http://{settings.web_host}:{settings.web_port} "
          f"(public {settings.web_public_url}); events -> {where}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.web_host, port=settings.web_port, log_level=args.loglevel,
                access_log=False, proxy_headers=args.proxy_headers,
                forwarded_allow_ips=args.forwarded_allow_ips)
    return EXIT_OK


def cmd_links_issue(args: argparse.Namespace) -> int:
    from refstream.web.frontdoor import FrontDoor, IssueError
    from refstream.web.publishing import publisher_from_settings
    from refstream.web.qr import qr_png, qr_svg
    from refstream.web.registry import Registry

    settings = _settings(args)
    registry = Registry(settings.web_registry)
    door = FrontDoor(settings, _rules(args.rules), registry, publisher_from_settings(settings))

    async def issue() -> dict[str, Any]:
        await door.publisher.start()
        try:
            issued, new = await door.issue(args.shop, args.referrer, args.campaign)
        finally:
            await door.publisher.stop()
        result: dict[str, Any] = {"code": issued.code, "campaign_id": issued.campaign_id,
                                  "link": door.link(issued), "issued_now": new}
        if args.qr_dir:
            folder = Path(args.qr_dir)
            folder.mkdir(parents=True, exist_ok=True)
            qr_link = door.link(issued, "qr")
            (folder / f"{issued.code}.svg").write_bytes(qr_svg(qr_link))
            (folder / f"{issued.code}.png").write_bytes(qr_png(qr_link))
            result["qr"] = [str(folder / f"{issued.code}.svg"), str(folder / f"{issued.code}.png")]
        if args.status_link:
            secret = registry.new_status_secret(args.shop, args.referrer, door.clock())
            result["status_url"] = f"{settings.web_public_url.rstrip('/')}/s/{secret}"
        return result

    try:
        result = asyncio.run(issue())
    except IssueError as exc:
        print(f"refstream links issue: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        registry.close()
    if args.format == "json":
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:11} {value}")
    return EXIT_OK


def cmd_links_revoke(args: argparse.Namespace) -> int:
    from refstream.web.frontdoor import wall_clock_ms
    from refstream.web.registry import Registry

    registry = Registry(_settings(args).web_registry)
    try:
        revoked = registry.revoke_status_secrets(args.shop, args.referrer, wall_clock_ms())
    finally:
        registry.close()
    print(f"revoked {revoked} status link(s) of {args.referrer} at {args.shop}")
    return EXIT_OK


def cmd_webhooks_run(args: argparse.Namespace) -> int:
    from refstream.web.webhooks import (
        Outbox,
        deliverer_from_settings,
        run_from_kafka,
        run_from_snapshot,
    )

    settings = _settings(args)
    if not settings.webhook_endpoints:
        print("refstream webhooks run: no endpoints; set REFSTREAM_WEBHOOK_ENDPOINTS "
              '(JSON: {"shop-1": "https://..."}) and REFSTREAM_WEBHOOK_SECRETS',
              file=sys.stderr)
        return EXIT_USAGE
    outbox = Outbox(settings.webhook_outbox)
    try:
        deliverer = deliverer_from_settings(settings, outbox)
        if args.source == "kafka":
            from kafka import KafkaConsumer

            from refstream.schemas.codec import Codec
            from refstream.streams.topics import TopicNames

            consumer = KafkaConsumer(
                TopicNames.from_settings(settings).reward_due,
                bootstrap_servers=settings.kafka_bootstrap, group_id=args.group,
                enable_auto_commit=False, auto_offset_reset="earliest",
                **settings.kafka_security())
            try:
                run_from_kafka(consumer, outbox, deliverer, Codec(), idle_exit_s=args.idle_exit)
            finally:
                consumer.close()
        else:
            run_from_snapshot(settings.web_snapshot, outbox, deliverer,
                              idle_exit_s=args.idle_exit)
    except KeyboardInterrupt:
        return 130
    finally:
        outbox.close()
    return EXIT_OK


def cmd_webhooks_log(args: argparse.Namespace) -> int:
    from refstream.web.webhooks import Outbox

    outbox = Outbox(_settings(args).webhook_outbox)
    try:
        rows = outbox.attempts() if args.attempts else outbox.deliveries()
    finally:
        outbox.close()
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
    return EXIT_OK


def register_web_commands(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="the HTTP edge: issue codes/links/QR, track clicks, status pages",
        description="Runs the ASGI app (Starlette on uvicorn). Followed links /r/CODE are "
                    "recorded as click events and redirected to the shop with UTM tags; "
                    "codes are issued through POST /api/v1/codes (shop API key) or share "
                    "pages; referrers read /s/SECRET. Events go to the event log "
                    "(default, fold it with `refstream run`) or the shop topics "
                    "(--publish-to kafka). See docs/serve.md.")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--public-url", help="the address visitors reach (links and QR codes)")
    serve.add_argument("--publish-to", choices=["log", "kafka"])
    serve.add_argument("--event-log", help="JSON Lines event log (with --publish-to log)")
    serve.add_argument("--snapshot", help="the analysts' published DuckDB snapshot")
    serve.add_argument("--registry", help="the edge's SQLite file (codes, status secrets)")
    serve.add_argument("--bootstrap")
    serve.add_argument("--rules", help="rules YAML (default: packaged default)")
    serve.add_argument("--loglevel", default="warning")
    serve.add_argument("--proxy-headers", action="store_true",
                       help="trust X-Forwarded-For from --forwarded-allow-ips (behind a proxy)")
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    serve.set_defaults(func=cmd_serve)

    links = sub.add_parser("links", help="issue referral codes, links and QR codes; revoke "
                                         "status links",
                           description="The issuing side of `refstream serve` from the "
                                       "command line: same registry, same code_issued events.")
    links_sub = links.add_subparsers(dest="links_command", required=True, metavar="ACTION")
    issue = links_sub.add_parser("issue", help="issue (or show) a referrer's code for a "
                                               "campaign",
                                 description="Prints the code and link; one code per "
                                             "referrer and campaign (asking again prints the "
                                             "same). Exit 1 if the campaign is not open to "
                                             "the referrer.")
    revoke = links_sub.add_parser("revoke", help="revoke every status link of a referrer")
    for parser in (issue, revoke):
        parser.add_argument("--shop", required=True)
        parser.add_argument("--referrer", required=True)
        parser.add_argument("--registry")
    issue.add_argument("--campaign", help="campaign id from the rules (default: none)")
    issue.add_argument("--rules")
    issue.add_argument("--publish-to", choices=["log", "kafka"])
    issue.add_argument("--event-log")
    issue.add_argument("--bootstrap")
    issue.add_argument("--public-url")
    issue.add_argument("--qr-dir", help="also write CODE.svg and CODE.png here")
    issue.add_argument("--status-link", action="store_true",
                       help="also create a secret status link for the referrer")
    issue.add_argument("--format", choices=["text", "json"], default="text")
    issue.set_defaults(func=cmd_links_issue)
    revoke.set_defaults(func=cmd_links_revoke)

    hooks = sub.add_parser("webhooks", help="deliver reward webhooks; show the delivery log",
                           description="Delivers reward-due and reversal events to each "
                                       "shop's endpoint (REFSTREAM_WEBHOOK_ENDPOINTS), "
                                       "signed with its secret, retried with backoff for "
                                       "at least 24 h, then dead-lettered. See docs/serve.md.")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    run = hooks_sub.add_parser("run", help="run the delivery worker")
    run.add_argument("--source", choices=["kafka", "snapshot"], default="snapshot",
                     help="refstream.reward-due on Kafka, or the published snapshot")
    run.add_argument("--bootstrap")
    run.add_argument("--snapshot")
    run.add_argument("--outbox", help="the delivery log (SQLite)")
    run.add_argument("--group", default="refstream-webhooks")
    run.add_argument("--idle-exit", type=float, default=None,
                     help="exit after this many seconds with nothing to do")
    run.set_defaults(func=cmd_webhooks_run)
    log = hooks_sub.add_parser("log", help="print deliveries (or --attempts) as TSV")
    log.add_argument("--outbox")
    log.add_argument("--attempts", action="store_true")
    log.set_defaults(func=cmd_webhooks_log)
