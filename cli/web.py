"""`refstream serve`, `refstream links issue | revoke`, `refstream webhooks run | log`: the
front door."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from refstream.cli import options

if TYPE_CHECKING:
    from refstream.rewards.rules import Rules

_PUBLISH_TO = click.Choice(["log", "kafka"])


def _rules(path: str | None) -> Rules:
    from refstream.rewards.rules import default_rules_path, load_rules

    return load_rules(Path(path) if path else default_rules_path())


@click.command()
@click.option("--host", help="address to listen on [default: $REFSTREAM_WEB_HOST]")
@click.option("--port", type=click.IntRange(0, 65535),
              help="port to listen on [default: $REFSTREAM_WEB_PORT]")
@click.option("--public-url", help="the address visitors reach (links and QR codes)")
@click.option("--publish-to", type=_PUBLISH_TO, help="where events go: the event log or Kafka")
@click.option("--event-log", help="JSON Lines event log (with --publish-to log)")
@click.option("--snapshot", help="the analysts' published DuckDB snapshot")
@click.option("--registry", help="the edge's SQLite file (codes, status secrets)")
@options.bootstrap()
@options.rules("rules YAML [default: the packaged default]")
@options.loglevel()
@click.option("--proxy-headers", is_flag=True,
              help="trust X-Forwarded-For from --forwarded-allow-ips (behind a proxy)")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
              help="the proxies whose X-Forwarded-For is trusted (comma-separated, or *)")
def serve(host: str | None, port: int | None, public_url: str | None, publish_to: str | None,
          event_log: str | None, snapshot: str | None, registry: str | None,
          bootstrap: str | None, rules_path: str | None, loglevel: str, proxy_headers: bool,
          forwarded_allow_ips: str) -> int:
    """The HTTP edge: issue codes/links/QR, track clicks, status pages.

    Runs the ASGI app (Starlette on uvicorn). Followed links /r/CODE are recorded as click
    events and redirected to the shop with UTM tags; codes are issued through POST
    /api/v1/codes (shop API key) or share pages; referrers read /s/SECRET. Events go to the
    event log (default, fold it with `refstream run`) or the shop topics (--publish-to
    kafka). See docs/serve.md.
    """
    from refstream.jobs.web import serve as serve_job

    settings = options.settings(
        bootstrap, web_host=host, web_port=port, web_public_url=public_url,
        web_publish_to=publish_to, web_event_log=event_log, web_snapshot=snapshot,
        web_registry=registry)
    return serve_job(settings, _rules(rules_path), loglevel=loglevel,
                     proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips)


@click.group()
def links() -> None:
    """Issue referral codes, links and QR codes; revoke status links.

    The issuing side of `refstream serve` from the command line: same registry, same
    code_issued events.
    """


@links.command()
@click.option("--shop", required=True, help="the shop id")
@click.option("--referrer", required=True, help="the referrer's customer id at the shop")
@click.option("--registry", help="the edge's SQLite file [default: $REFSTREAM_WEB_REGISTRY]")
@click.option("--campaign", help="campaign id from the rules [default: none]")
@options.rules("rules YAML [default: the packaged default]")
@click.option("--publish-to", type=_PUBLISH_TO,
              help="where the code_issued event goes: the event log or Kafka")
@click.option("--event-log", help="JSON Lines event log (with --publish-to log)")
@options.bootstrap()
@click.option("--public-url", help="the address visitors reach (links and QR codes)")
@click.option("--qr-dir", type=click.Path(file_okay=False, path_type=Path),
              help="also write CODE.svg and CODE.png here")
@click.option("--status-link", is_flag=True,
              help="also create a secret status link for the referrer")
@options.output_format(("text", "json"), default="text", help_text="text for people, json "
                                                                     "for scripts")
def issue(shop: str, referrer: str, registry: str | None, campaign: str | None,
          rules_path: str | None, publish_to: str | None, event_log: str | None,
          bootstrap: str | None, public_url: str | None, qr_dir: Path | None,
          status_link: bool, fmt: str) -> int:
    """Issue (or show) a referrer's code for a campaign.

    Prints the code and link; one code per referrer and campaign (asking again prints the
    same). Exit 1 if the campaign is not open to the referrer.
    """
    from refstream.jobs.web import issue_link

    settings = options.settings(bootstrap, web_registry=registry, web_publish_to=publish_to,
                                web_event_log=event_log, web_public_url=public_url)
    return issue_link(settings, _rules(rules_path), shop=shop,
                      referrer=referrer, campaign=campaign, qr_dir=qr_dir,
                      status_link=status_link, fmt=fmt)


@links.command()
@click.option("--shop", required=True, help="the shop id")
@click.option("--referrer", required=True, help="the referrer's customer id at the shop")
@click.option("--registry", help="the edge's SQLite file [default: $REFSTREAM_WEB_REGISTRY]")
def revoke(shop: str, referrer: str, registry: str | None) -> int:
    """Revoke every status link of a referrer."""
    from refstream.jobs.web import revoke_links

    return revoke_links(options.settings(web_registry=registry), shop=shop, referrer=referrer)


@click.group()
def webhooks() -> None:
    """Deliver reward webhooks; show the delivery log.

    Delivers reward-due and reversal events to each shop's endpoint
    (REFSTREAM_WEBHOOK_ENDPOINTS), signed with its secret, retried with backoff for at
    least 24 h, then dead-lettered. See docs/serve.md.
    """


@webhooks.command("run")
@click.option("--source", type=click.Choice(["kafka", "snapshot"]), default="snapshot",
              show_default=True,
              help="refstream.reward-due on Kafka, or the published snapshot")
@options.bootstrap()
@click.option("--snapshot", help="the published DuckDB snapshot")
@click.option("--outbox", help="the delivery log (SQLite)")
@click.option("--group", default="refstream-webhooks", show_default=True,
              help="consumer group of the delivery worker (with --source kafka)")
@click.option("--idle-exit", type=float, default=None,
              help="exit after this many seconds with nothing to do")
def run_command(source: str, bootstrap: str | None, snapshot: str | None, outbox: str | None,
                group: str, idle_exit: float | None) -> int:
    """Run the delivery worker."""
    from refstream.jobs.web import deliver_webhooks

    settings = options.settings(bootstrap, web_snapshot=snapshot, webhook_outbox=outbox)
    return deliver_webhooks(settings, source=source, group=group, idle_exit=idle_exit)


@webhooks.command()
@click.option("--outbox", help="the delivery log (SQLite)")
@click.option("--attempts", is_flag=True, help="every attempt instead of each delivery")
def log(outbox: str | None, attempts: bool) -> int:
    """Print deliveries (or --attempts) as TSV."""
    from refstream.jobs.web import webhook_log

    return webhook_log(options.settings(webhook_outbox=outbox), attempts=attempts)


COMMANDS = (serve, links, webhooks)
