"""The `refstream` command line: one entry point, a subcommand per job, `--help` on each.

Exit codes scripts can trust (streams/exit_codes.py, README "Exit codes"): 0 success,
1 the job ran and found a problem (e.g. a payer conflict) or an internal error, 2 bad
usage or input that could not be read, 3 `run` went through its whole input but
dead-lettered some records (they are in the DLQ file it names), 4 the broker did not
answer within the bound, 5 the broker refused (not authorized).

Rules, for every command that folds events: `--rules FILE`, else `REFSTREAM_RULES_PATH`, else
the packaged default; the command prints which version it used and where it came from.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refstream.replay.collector import tune_garbage_collector
from refstream.schemas.errors import RefstreamError
from refstream.streams.exit_codes import (
    EXIT_DEAD_LETTERS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    exit_code_for,
)
from refstream.streams.settings import Settings


@contextmanager
def progress_bar(total: int | None, unit: str, desc: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr (quiet when stderr is not a terminal and CI is set)."""
    from tqdm import tqdm

    with tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, unit_scale=True,
              dynamic_ncols=True, mininterval=0.5) as bar:

        def advance(count: int) -> None:
            bar.update(count)

        yield advance


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "bootstrap", None):
        overrides["kafka_bootstrap"] = args.bootstrap
    return Settings(**overrides)


def _default_rules_path() -> Path:
    from refstream.rewards.rules import default_rules_path

    return Path(default_rules_path())


# ---------------------------------------------------------------------------- generate


def cmd_generate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from refstream.tools.synthetic import SyntheticConfig, events_for_target, write_jsonl

    if args.events:
        config = replace(events_for_target(args.events, seed=args.seed), fraud=not args.no_fraud)
    else:
        config = SyntheticConfig(seed=args.seed, shops=args.shops,
                                 customers_per_shop=args.customers, days=args.days,
                                 fraud=not args.no_fraud)
    summary = write_jsonl(config, Path(args.out))
    print(json.dumps(_as_jsonable(summary), indent=2))
    return EXIT_OK


def _as_jsonable(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return {k: _as_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _as_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# ---------------------------------------------------------------------------- produce


def cmd_produce(args: argparse.Namespace) -> int:
    from refstream.schemas.jsonl import parse_line
    from refstream.streams.embedded import numbered_lines
    from refstream.streams.producer import publish_shop_events
    from refstream.streams.topics import ensure_topics

    settings = _settings(args)
    ensure_topics(settings)
    path = Path(args.file)

    def events() -> Iterator[Any]:
        with path.open("rb") as stream:
            for number, line in numbered_lines(stream):
                try:
                    if isinstance(line, bytes):
                        raise ValueError("not UTF-8 text; re-export the file as UTF-8")
                    yield parse_line(line)
                except ValueError as exc:
                    if args.skip_invalid:
                        print(f"{path}:{number}: skipped: {exc}", file=sys.stderr)
                        continue
                    raise RefstreamError(f"{path}:{number}: {exc}") from exc

    with progress_bar(None, "ev", f"produce {path.name}") as advance:
        sent = publish_shop_events(settings, events(), advance)
    print(f"published {sent} events from {path} to {settings.kafka_bootstrap}")
    return EXIT_OK


# ---------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from refstream.persistence.store import ProjectionStore
    from refstream.streams.embedded import DEAD_LETTER_KINDS, EmbeddedRunner

    events_path = Path(args.events)
    if not events_path.is_file():
        raise RefstreamError(f"no events file at {events_path}; create one with "
                             "`refstream generate --out FILE.jsonl`")
    rules = _rules(args.rules)
    db_path = Path(args.db)
    if db_path.exists() and not args.append:
        db_path.unlink()
    continuing = args.append and db_path.exists()
    store = ProjectionStore(db_path)
    runner = EmbeddedRunner(Settings(), rules, store,
                            wall_clock_ms=_fixed_clock(args.wall_clock) if args.wall_clock
                            else None)
    try:
        if continuing:
            runner.restore_state()
        total_lines = _count_lines(events_path)
        with progress_bar(total_lines, "ev", "run") as advance:
            summary = runner.run_file(events_path, advance)
        runner.save_state()
    except BaseException:
        store.close()
        raise
    dlq_path = _write_dead_letters(db_path, summary.dead_letters, append=continuing)
    counts = {
        name: store.connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        for name in ("referrals", "rewards", "fraud_flags")
    }
    store.close()
    print(f"read {summary.lines} lines: {summary.accepted} events applied, "
          f"{summary.duplicates} duplicates ignored, {len(summary.dead_letters)} dead letters "
          f"({summary.events_per_second:,.0f} events/s)")
    print(f"rules {rules.version}; {'continued' if continuing else 'wrote'} {db_path}: " +
          ", ".join(f"{n} {c}" for n, c in counts.items()))
    print("dead letters: " + ", ".join(f"{kind} {summary.dead_letter_kinds[kind]}"
                                       for kind in DEAD_LETTER_KINDS))
    if summary.dead_letters:
        print(f"dead letters written to {dlq_path} (exit {EXIT_DEAD_LETTERS})")
        return EXIT_DEAD_LETTERS
    return EXIT_OK


def dead_letter_path(db_path: Path) -> Path:
    """Where `run` writes the lines it rejected: beside the database, `.dlq.jsonl` in
    place of its suffix (out/run.duckdb -> out/run.dlq.jsonl)."""
    return db_path.with_suffix(".dlq.jsonl")


def _fixed_clock(iso: str) -> Callable[[], int]:
    """A clock stopped at `iso` (the end of a recorded or simulated history)."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RefstreamError(f"--wall-clock {iso!r} is not an ISO-8601 time such as "
                             "2026-11-30T00:00:00Z") from exc
    if moment.tzinfo is None:
        raise RefstreamError(f"--wall-clock {iso!r} needs a zone, e.g. {iso}Z")
    ms = int(moment.timestamp() * 1000)
    return lambda: ms


def _count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))


def _write_dead_letters(db_path: Path, letters: list[Any], append: bool = False) -> Path:
    target = dead_letter_path(db_path)
    if not letters:
        if not append:
            target.unlink(missing_ok=True)
        return target
    with target.open("a" if append else "w", encoding="utf-8") as out:
        for letter in letters:
            out.write(json.dumps({
                "source": letter.source_topic, "line": letter.source_offset,
                "shop_id": letter.shop_id, "error": letter.error,
                "original": letter.original.decode("utf-8", "replace"),
            }) + "\n")
    return target


# ---------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a month of shops, run the whole pipeline embedded, report."""
    import shutil
    import time as _time
    from dataclasses import replace

    from refstream.persistence.archive import ArchiveWriter
    from refstream.persistence.store import ProjectionStore
    from refstream.reports.html_report import write_html_report
    from refstream.reports.results import open_read_only, render_table, run_report
    from refstream.schemas.codec import Codec
    from refstream.streams.embedded import EmbeddedLog, EmbeddedRunner
    from refstream.streams.finance import EmbeddedPayer, FinanceLedger
    from refstream.tools.synthetic import SyntheticConfig, write_jsonl

    started = _time.perf_counter()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    settings, rules, codec = Settings(), _rules(args.rules), Codec()
    config = SyntheticConfig(seed=args.seed, shops=args.shops, customers_per_shop=args.customers,
                             days=30)
    print(f"1/4 generating {args.shops} shops x {args.customers} customers, 30 days "
          f"(seed {args.seed})", file=sys.stderr)
    events_path = out / "events.jsonl"
    generated = write_jsonl(config, events_path)
    store = ProjectionStore(out / "refstream.duckdb")
    log = EmbeddedLog(ArchiveWriter(out / "archive"), codec, settings.partitions)
    ledger = FinanceLedger(out / "finance-ledger.sqlite")
    payer = EmbeddedPayer(ledger, codec, lambda row: store.add_row("payouts", row))
    # The demo's month ends now: event times are checked against the end of its history.
    runner = EmbeddedRunner(settings, rules, store, log.append, payer.offer,
                            wall_clock_ms=_fixed_clock(generated.last_occurred_at))
    print("2/4 ingest validation + attribution -> fraud -> rewards -> DuckDB", file=sys.stderr)
    with progress_bar(_count_lines(events_path), "ev", "pipeline") as advance:
        summary = runner.run_file(events_path, advance)
    runner.save_state()  # so `refstream review approve|reject` can continue this log
    log.close()
    store.close()
    ledger.close()
    print("3/4 reports", file=sys.stderr)
    conn = open_read_only(out / "refstream.duckdb")
    try:
        for name, columns in (("scorecard", ("kpi", "currency", "value", "status", "numerator",
                                             "denominator", "benchmark")),
                              ("funnel", ("step", "count", "from_previous", "drop_off"))):
            report = run_report(conn, name)
            overall = replace(report, rows=[r for r in report.rows if r[0 if name == "funnel"
                                                                         else 1] == "(all shops)"])
            print()
            print(render_table(overall, columns))
        html = write_html_report(conn, out / "report.html")
    finally:
        conn.close()
    seconds = _time.perf_counter() - started
    print(f"""
4/4 done in {seconds:.1f}s: {summary.accepted} events ({_as_jsonable(generated).get("events",
    summary.lines)} generated), {len(summary.dead_letters)} dead letters, rules {rules.version}
  HTML report : {html}
  DuckDB      : {out / "refstream.duckdb"}   (tables: referrals, rewards, fraud_flags, orders, ...)
  log archive : {out / "archive"}   (replay it: refstream replay --archive {out / "archive"} \
--rules NEW.yaml --db out/new.duckdb --diff-against {out / "refstream.duckdb"})
  per shop    : refstream report scorecard --db {out / "refstream.duckdb"}
  explain     : refstream report explain referral-rate --db {out / "refstream.duckdb"}
  plain SQL   : refstream sql --db {out / "refstream.duckdb"} "SELECT status, count(*) \
FROM referrals GROUP BY ALL ORDER BY 2 DESC\"""")
    _print_front_door(out, settings)
    return EXIT_OK


def _print_front_door(out: Path, settings: Settings) -> None:
    """The busiest referrer's status link and share page, to open under `refstream serve`."""
    from refstream.web.demo import demo_links

    links = demo_links(out / "refstream.duckdb", out / "registry.sqlite",
                       settings.web_public_url)
    if links is None:
        return
    print(f"""  front door  : refstream serve --registry {out / "registry.sqlite"} \
--snapshot {out / "refstream.duckdb"}
                then open {links.status_url}
                (status page of {links.referrer_id} at {links.shop_id}) and the share page
                {links.share_url}""")


def cmd_sql(args: argparse.Namespace) -> int:
    """Any SQL against a projection database, read-only (analysts never lock the writer)."""
    from refstream.reports.results import open_read_only
    from refstream.reports.tables_output import render_rows

    conn = open_read_only(args.db)
    try:
        cursor = conn.execute(args.query)
        header = [d[0] for d in cursor.description or []]
        print(render_rows(header, cursor.fetchall(), args.format))
    finally:
        conn.close()
    return EXIT_OK

# ---------------------------------------------------------------------------- kafka runtime


def cmd_topics(args: argparse.Namespace) -> int:
    from refstream.streams.topics import TopicNames, ensure_topics, topic_specs

    settings = _settings(args)
    if args.action == "list":
        for spec in topic_specs(TopicNames.from_settings(settings), settings.partitions,
                                replication_factor=settings.replication_factor,
                                own_topic_shops=settings.shop_principals.values()):
            print(f"{spec.name:28} partitions={spec.partitions} {spec.config}  # {spec.purpose}")
        return EXIT_OK
    created = ensure_topics(settings, strict=True)
    print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
    return EXIT_OK


def cmd_projector(args: argparse.Namespace) -> int:
    from refstream.streams.projector import run_projector
    from refstream.streams.topics import ensure_topics

    settings = _settings(args)
    ensure_topics(settings)
    return run_projector(settings, _rules(args.rules), Path(args.db),
                         Path(args.snapshot) if args.snapshot else None, args.publish_every,
                         loglevel=args.loglevel)


def cmd_worker(args: argparse.Namespace) -> int:
    from refstream.streams.worker import run_worker

    # Ingest needs the rules too: their allowed lateness is what counts as a late append.
    return run_worker(_settings(args), args, _rules(args.rules))


# ---------------------------------------------------------------------------- archive & replay


def resolve_rules_path(path: str | None) -> tuple[Path, str]:
    """The rules file every command uses, and why: `--rules`, else REFSTREAM_RULES_PATH,
    else the packaged default."""
    if path:
        return Path(path), "--rules"
    configured = Settings().rules_path
    if configured is not None:
        return Path(configured), "REFSTREAM_RULES_PATH"
    return _default_rules_path(), "packaged default"


def _rules(path: str | None) -> Any:
    from refstream.rewards.rules import load_rules

    resolved, why = resolve_rules_path(path)
    rules = load_rules(resolved)
    print(f"rules {rules.version} from {resolved} ({why})", file=sys.stderr)
    return rules


def cmd_archive(args: argparse.Namespace) -> int:
    """Copy the canonical log topic to the Parquet archive, from where the archive ends."""
    from refstream.persistence.archive import ArchiveWriter, archive_log_records
    from refstream.replay.sources import topic_raw_records
    from refstream.schemas.codec import Codec
    from refstream.streams.topics import TopicNames

    settings = _settings(args)
    topic = TopicNames.from_settings(settings).log
    writer = ArchiveWriter(Path(args.archive))
    codec = Codec()
    records = topic_raw_records(settings.kafka_bootstrap, topic, settings.kafka_security(),
                                start_at=writer.next_offset)
    total = 0
    try:
        with progress_bar(None, "rec", "archive") as advance:
            for record in records:
                total += archive_log_records(writer, codec, iter([record]))
                if writer.buffered >= 100_000:
                    writer.flush()
                advance(1)
    except FileNotFoundError as exc:
        raise RefstreamError(str(exc)) from exc
    writer.flush()
    print(f"archived {total} records of {topic} into {args.archive}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from refstream.persistence.archive import ArchiveReader
    from refstream.persistence.store import ProjectionStore
    from refstream.replay.engine import replay_archive, replay_events
    from refstream.replay.sources import AsOf, events_of, topic_records
    from refstream.streams.topics import TopicNames

    rules = _rules(args.rules)
    as_of = AsOf.parse(_parse_time(args.as_of_time), args.as_of_offsets)
    db_path = Path(args.db)
    db_path.unlink(missing_ok=True)
    store = ProjectionStore(db_path)
    if args.archive and Path(args.archive, "_commits").is_dir():
        source = f"archive {args.archive}"
        total = ArchiveReader(args.archive).record_count
        with progress_bar(total, "ev", f"replay {rules.version}") as advance:
            counts = replay_archive(args.archive, rules, store, as_of, advance)
    else:
        settings = _settings(args)
        topic = TopicNames.from_settings(settings).log
        records = topic_records(settings.kafka_bootstrap, topic, settings.kafka_security(),
                                as_of, stall_timeout_s=settings.client_timeout_s)
        source = f"topic {topic} from offset 0"
        with progress_bar(None, "ev", f"replay {rules.version}") as advance:
            counts = replay_events(events_of(records), rules, store, advance)
    store.close()
    print(f"replayed {counts.events} events from {source} with rules {rules.version} "
          f"in {counts.seconds:.1f}s ({counts.events_per_second:,.0f} events/s) -> {db_path}")
    if args.diff_against:
        return _print_diff(Path(args.diff_against), db_path, args.format)
    return EXIT_OK


def _parse_time(text: str | None) -> int | None:
    if not text:
        return None
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def cmd_diff(args: argparse.Namespace) -> int:
    code = _print_diff(Path(args.before), Path(args.after), args.format)
    if args.apply:
        from refstream.replay.diff import corrections
        from refstream.streams.producer import kafka_producer
        from refstream.streams.schema_registry import worker_codec
        from refstream.streams.topics import TopicNames, ensure_topics

        settings = _settings(args)
        ensure_topics(settings)
        messages = corrections(args.before, args.after)
        producer = kafka_producer(settings)
        # In registry framing too when the worker writes its outputs so.
        codec, topic = worker_codec(settings), TopicNames.from_settings(settings).reward_due
        for message in messages:
            producer.send(topic, key=message.reward_id.encode(), value=codec.encode(message))
        producer.flush()
        producer.close()
        print(f"published {len(messages)} corrections to {topic} (deterministic ids and "
              "bytes: publishing them again gives finance duplicates, never conflicts)")
    return code


def _print_diff(before: Path, after: Path, fmt: str) -> int:
    from refstream.replay.diff import diff_projections
    from refstream.reports.tables_output import render_rows

    diff = diff_projections(before, after)
    if diff.before_version != diff.after_version:
        # Plain words on the side that a person reads (stdout for a table, stderr otherwise).
        print(f"note: the two sides ran under different rules versions: {diff.before} with "
              f"{diff.before_version}, {diff.after} with {diff.after_version}; differences "
              "below may come from the rules, not only from the log",
              file=sys.stdout if fmt == "table" else sys.stderr)
    if fmt == "json":
        print(json.dumps(_as_jsonable({
            "before": diff.before, "after": diff.after, "before_version": diff.before_version,
            "after_version": diff.after_version,
            "same_rules_version": diff.before_version == diff.after_version,
            "entities": {k: {"added": v.added, "removed": v.removed, "changed": v.changed}
                         for k, v in diff.entities.items()},
            "money": [dict(_as_jsonable(m), delta_minor=m.delta_minor) for m in diff.money],
        }), default=str, indent=2))
        return EXIT_OK
    money_rows = [(m.dimension, m.key, m.currency, m.before_minor, m.after_minor, m.delta_minor)
                  for m in diff.money]
    if fmt == "csv":
        print(render_rows(["dimension", "key", "currency", "before_minor", "after_minor",
                           "delta_minor"], money_rows, "csv"), end="")
        return EXIT_OK
    print(f"diff {diff.before} ({diff.before_version}) -> {diff.after} ({diff.after_version})")
    print(render_rows(["table", "added", "removed", "changed"], diff.summary_rows(), "table"))
    print(render_rows(["dimension", "key", "currency", "before", "after", "delta"], money_rows,
                      "table"))
    for name, entity in diff.entities.items():
        for kind, rows in (("added", entity.added), ("removed", entity.removed),
                           ("changed", entity.changed)):
            for row in rows[:5]:
                print(f"  {name} {kind}: {row}")
            if len(rows) > 5:
                print(f"  ... {len(rows) - 5} more {name} {kind}")
    return EXIT_OK


def cmd_compare_models(args: argparse.Namespace) -> int:
    """First vs last touch, code override on/off, over the same log."""
    import tempfile

    from refstream.persistence.store import ProjectionStore
    from refstream.replay.engine import replay_archive
    from refstream.reports.tables_output import render_rows

    base = _rules(args.rules)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in ("last_touch", "first_touch"):
            for override in (True, False):
                attribution = base.attribution.model_copy(
                    update={"model": model, "code_overrides_link": override})
                rules = base.model_copy(update={
                    "attribution": attribution,
                    "version": f"{base.version}+{model}+override={override}"})
                store = ProjectionStore(Path(scratch) / f"{model}-{override}.duckdb")
                replay_archive(args.archive, rules, store)
                summary = store.connection.execute("""
                    SELECT count(*) FILTER (WHERE status IN ('attributed','qualified','held')),
                           count(*) FILTER (WHERE status = 'qualified'),
                           count(DISTINCT referrer_id),
                           (SELECT coalesce(sum(amount_minor), 0) FROM rewards
                             WHERE status IN ('pending','held','due') AND kind <> 'points')
                    FROM referrals""").fetchone()
                store.close()
                assert summary is not None
                rows.append((model, "on" if override else "off", *summary))
    print(render_rows(["model", "code overrides link", "referrals", "qualified",
                       "referrers", "rewards owed (minor, non-points)"], rows, args.format))
    return EXIT_OK


def cmd_finance_tail(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from refstream.streams.exit_codes import broker_error
    from refstream.streams.finance import BoundedConsumer, FinanceLedger, PaymentOutcome, tail
    from refstream.streams.metrics import Health, ProcessMetrics, serve_http
    from refstream.streams.schema_registry import reader_codec
    from refstream.streams.topics import TopicNames

    settings = _settings(args)
    topic = TopicNames.from_settings(settings).reward_due
    bound_ms = int(settings.client_timeout_s * 1000)
    try:
        raw_consumer = KafkaConsumer(
            topic, bootstrap_servers=settings.kafka_bootstrap, group_id=args.group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            bootstrap_timeout_ms=bound_ms,
            request_timeout_ms=max(1000, min(30_000, bound_ms // 2)),
            **settings.kafka_security())
    except KafkaError as exc:
        raise broker_error("reading reward-due", settings.kafka_bootstrap, exc,
                           settings.client_timeout_s) from exc
    metrics, health = ProcessMetrics(), Health()
    health.ready.set()
    server = serve_http(metrics, health, settings.metrics_host, settings.metrics_port)
    print(f"metrics on http://{settings.metrics_host}:{server.server_port}/metrics",
          file=sys.stderr)
    consumer = BoundedConsumer(raw_consumer, settings.kafka_bootstrap, settings.client_timeout_s,
                               metrics=metrics)
    ledger = FinanceLedger(Path(args.ledger))

    def report(outcome: PaymentOutcome) -> None:
        if outcome.action in ("paid", "clawed_back"):
            print(f"{outcome.action.upper():11} {outcome.message_id} {outcome.beneficiary_id} "
                  f"{outcome.amount_minor} {outcome.currency}", flush=True)
        elif not args.quiet:
            print(f"{outcome.action.upper():11} {outcome.message_id}", flush=True)

    try:
        conflicts = tail(consumer, ledger, reader_codec(settings), report, args.idle_exit)
    finally:
        health.stopping.set()
        server.shutdown()
        raw_consumer.close()
        totals = ledger.totals()
        ledger.close()
    print(f"ledger totals: {totals}; conflicts: {conflicts}")
    return EXIT_PROBLEM if conflicts else EXIT_OK

# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refstream",
        description="Event-sourced referral attribution: ingest shop events, attribute "
                    "referrals, decide rewards and fraud flags, project them to DuckDB, "
                    "replay history under new rules.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="write a seeded synthetic shop event stream (JSONL)",
                         description="Generate realistic shop events (funnel and scorecard bands "
                                     "per docs/benchmarks.md, "
                                     "injected fraud) as JSON Lines, with ground truth beside "
                                     "them in <out>.truth.json. Same seed, same bytes.")
    gen.add_argument("--out", required=True, help="the JSON Lines file to write")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--shops", type=int, default=3)
    gen.add_argument("--customers", type=int, default=2000, help="existing customers per shop")
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument("--events", type=int, default=0,
                     help="about this many events in total (overrides shops/customers/days)")
    gen.add_argument("--no-fraud", action="store_true", help="do not inject fraud patterns")
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser("demo", help="the main job, embedded: a month of shops -> DuckDB, "
                                       "scorecard and HTML report (no Kafka)",
                          description="Generates a realistic month for a few shops, runs "
                                      "ingest validation and the whole pipeline in-process, "
                                      "writes the DuckDB projections, the log archive and an "
                                      "HTML report, and prints the scorecard.")
    demo.add_argument("--out", default="out/demo", help="output folder (recreated)")
    demo.add_argument("--shops", type=int, default=3)
    demo.add_argument("--customers", type=int, default=3000, help="customers per shop")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--rules", help="rules YAML (default: "
                        "REFSTREAM_RULES_PATH, else the packaged default)")
    demo.set_defaults(func=cmd_demo)

    sql = sub.add_parser("sql", help="run SQL against a projection database (read-only)",
                         description="Opens the DuckDB file read-only and prints the result.")
    sql.add_argument("query")
    sql.add_argument("--db", required=True)
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=cmd_sql)

    prod = sub.add_parser("produce", help="publish a JSONL file to the shop topics on Kafka",
                          description="Validate each line and publish it Avro-encoded to "
                                      "shop.<event_type>, keyed by shop id.")
    prod.add_argument("file", help="JSON Lines file of shop events")
    prod.add_argument("--bootstrap", help="Kafka bootstrap servers (REFSTREAM_KAFKA_BOOTSTRAP)")
    prod.add_argument("--skip-invalid", action="store_true",
                      help="report and skip invalid lines instead of stopping at the first")
    prod.set_defaults(func=cmd_produce)

    run = sub.add_parser("run", help="run ingest validation and the core over a JSONL file "
                                     "(embedded, no Kafka) into DuckDB",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Embedded pipeline: the file's line order is the log "
                                     "order. Writes referrals, rewards, fraud_flags and the "
                                     "other projection tables to --db, and the core's state "
                                     "beside them so --append can continue the log.\n\n"
                                     "Dead letters: a line that is not UTF-8, not valid JSON or "
                                     "not a valid event (money must be a JSON integer of minor "
                                     "units), or that repeats an event id with other content "
                                     "(a conflicting duplicate), is written with its file:line "
                                     "and the error to the DLQ file beside --db, its suffix "
                                     "replaced by .dlq.jsonl (out/run.duckdb -> "
                                     "out/run.dlq.jsonl); the run goes on.",
                         epilog=f"exit codes: {EXIT_OK} every line applied or a byte-identical "
                                f"repeat; {EXIT_DEAD_LETTERS} the run finished but dead-lettered "
                                f"records (counts printed per kind); {EXIT_USAGE} the input or "
                                "the rules could not be used (nothing was written).")
    run.add_argument("--events", required=True, help="JSON Lines file of shop events")
    run.add_argument("--rules", help="rules YAML (default: REFSTREAM_RULES_PATH, else the "
                                     "packaged default rules)")
    run.add_argument("--db", required=True, help="DuckDB file to (re)create")
    run.add_argument("--append", action="store_true",
                     help="continue the log in an existing --db: the same tables as one run "
                          "over all the files in order (same rules version only)")
    run.add_argument("--strict", action="store_true",
                     help=f"kept for older scripts: dead letters always exit {EXIT_DEAD_LETTERS}")
    run.add_argument("--wall-clock", metavar="ISO-TIME",
                     help="check event times against this time instead of now (a line dated "
                          "more than REFSTREAM_FUTURE_TOLERANCE_S after it, or "
                          "REFSTREAM_EVENT_HORIZON_DAYS before it, is rejected); give the end "
                          "of a recorded or simulated history, e.g. 2026-12-31T00:00:00Z")
    run.set_defaults(func=cmd_run)

    topics = sub.add_parser("topics", help="list or create the Kafka topics",
                            description="Topic specs (partitions, retention, cleanup) as "
                                        "code; `create` adds the missing ones.")
    topics.add_argument("action", choices=["list", "create"])
    topics.add_argument("--bootstrap")
    topics.set_defaults(func=cmd_topics)

    worker = sub.add_parser("worker", help="run a live worker (ingest + pipeline) on Kafka",
                            description="Joins the consumer group; stop it with SIGTERM or "
                                        "Ctrl-C (it drains and commits first).")
    worker.add_argument("--bootstrap")
    worker.add_argument("--rules", help="rules YAML (default: "
                        "REFSTREAM_RULES_PATH, else the packaged default)")
    worker.add_argument("--no-ingest", action="store_true", help="run only the pipeline")
    worker.add_argument("--no-pipeline", action="store_true", help="run only ingest")
    worker.add_argument("--archive", help="also archive the canonical log to this directory")
    worker.add_argument("--loglevel", default="warning")
    worker.set_defaults(func=cmd_worker)

    projector = sub.add_parser("projector", help="keep a DuckDB read model of the live topics",
                               description="Consumes refstream.log and the derived topics into "
                                           "--db (its own consumer group, the only writer) and "
                                           "publishes a read-only copy to --snapshot for "
                                           "analysts every --publish-every seconds.")
    projector.add_argument("--db", required=True, help="the projector's own DuckDB file")
    projector.add_argument("--snapshot", help="published read-only copy for analysts")
    projector.add_argument("--publish-every", type=float, default=2.0)
    projector.add_argument("--rules", help="rules YAML (for the campaigns table; default: "
                                           "REFSTREAM_RULES_PATH, else the packaged default)")
    projector.add_argument("--bootstrap")
    projector.add_argument("--loglevel", default="warning")
    projector.set_defaults(func=cmd_projector)

    archive = sub.add_parser("archive", help="copy the canonical log topic to the Parquet archive",
                             description="Appends refstream.log to the archive from where it "
                                         "ends (resumable; never skips or repeats an offset).")
    archive.add_argument("--archive", required=True, help="archive directory")
    archive.add_argument("--bootstrap")
    archive.set_defaults(func=cmd_archive)

    replay = sub.add_parser("replay", help="run the core over the archived log with any rules",
                            description="Replays the archive (or the refstream.log topic from "
                                        "offset 0 when there is no archive) into a fresh DuckDB "
                                        "with the same tables as the live projections.")
    replay.add_argument("--archive", help="archive directory (default: read the topic)")
    replay.add_argument("--bootstrap")
    replay.add_argument("--rules", help="rules YAML (default: "
                        "REFSTREAM_RULES_PATH, else the packaged default)")
    replay.add_argument("--db", required=True, help="DuckDB file to (re)create")
    replay.add_argument("--as-of-time", help="only records appended up to this UTC time "
                                             "(ISO-8601): what did we believe then")
    replay.add_argument("--as-of-offsets", help="only offsets below P:O,P:O per partition")
    replay.add_argument("--diff-against", help="print the diff from this DuckDB to the replay")
    replay.add_argument("--format", choices=["table", "csv", "json"], default="table")
    replay.set_defaults(func=cmd_replay)

    diff = sub.add_parser("diff", help="compare two projection databases (rules A vs rules B)",
                          description="Referrals, rewards and fraud flags added / removed / "
                                      "changed, and money per referrer, campaign and in total.")
    diff.add_argument("before", help="DuckDB of the current projections")
    diff.add_argument("after", help="DuckDB of the proposed projections")
    diff.add_argument("--format", choices=["table", "csv", "json"], default="table")
    diff.add_argument("--apply", action="store_true",
                      help="publish reward-due and reversal corrections to Kafka")
    diff.add_argument("--bootstrap")
    diff.set_defaults(func=cmd_diff)

    models = sub.add_parser("compare-models", help="first vs last touch, code override on/off",
                            description="Replays the same archive under each attribution model "
                                        "and prints referrals, referrers and money per model.")
    models.add_argument("--archive", required=True)
    models.add_argument("--rules", help="rules YAML (default: REFSTREAM_RULES_PATH, else the "
                                        "packaged default)")
    models.add_argument("--format", choices=["table", "csv", "json"], default="table")
    models.set_defaults(func=cmd_compare_models)

    finance = sub.add_parser("finance-tail", help="reference finance consumer: pay each "
                                                  "reward id once",
                             description="Reads refstream.reward-due, pays each reward id "
                                         "once (ledger in SQLite), skips byte-identical "
                                         "repeats, exits 1 on a conflicting repeat.")
    finance.add_argument("--bootstrap")
    finance.add_argument("--group", default="refstream-finance")
    finance.add_argument("--ledger", default="out/finance-ledger.sqlite")
    finance.add_argument("--idle-exit", type=float, default=None,
                         help="exit after this many seconds without messages")
    finance.add_argument("--quiet", action="store_true", help="print payments only")
    finance.set_defaults(func=cmd_finance_tail)

    from refstream.deploy.acls import register_security_commands
    from refstream.reports.reporting import register_report_commands
    from refstream.streams.dlq import register_dlq_commands
    from refstream.tools.erasure import register_erasure_commands

    register_report_commands(sub)
    from refstream.reports.review import register_review_commands

    register_review_commands(sub)
    register_dlq_commands(sub)
    register_erasure_commands(sub)
    register_security_commands(sub)
    from refstream.web.cli import register_web_commands

    register_web_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except RefstreamError as exc:
        print(f"refstream {args.command}: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        kafka_failure = _as_broker_error(args, exc)
        if kafka_failure is None:
            raise  # a bug: the traceback (exit 1) is what to report
        print(f"refstream {args.command}: {kafka_failure}", file=sys.stderr)
        return exit_code_for(kafka_failure)
    return result


def _as_broker_error(args: argparse.Namespace, exc: Exception) -> RefstreamError | None:
    """A Kafka client error no command turned into a message of its own, as one."""
    from kafka.errors import KafkaError

    if not isinstance(exc, KafkaError):
        return None
    from refstream.streams.exit_codes import broker_error

    settings = _settings(args)
    return broker_error(f"refstream {args.command}", settings.kafka_bootstrap, exc,
                        settings.client_timeout_s)


if __name__ == "__main__":
    sys.exit(main())
