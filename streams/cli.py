"""The `refstream` command line: one entry point, a subcommand per job, `--help` on each.

Exit codes scripts can trust: 0 success, 1 the job ran and found a problem (e.g. dead
letters with --strict), 2 bad usage or input that could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refstream.schemas.errors import RefstreamError
from refstream.streams.settings import Settings

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


@contextmanager
def progress_bar(total: int | None, unit: str, desc: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr (quiet when stderr is not a terminal and CI is set)."""
    from tqdm import tqdm

    with tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, unit_scale=True,
              dynamic_ncols=True, mininterval=0.5) as bar:
        yield bar.update


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
    from refstream.streams.synthetic import SyntheticConfig, events_for_target, write_jsonl

    if args.events:
        config = events_for_target(args.events, seed=args.seed)
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
    from refstream.schemas.jsonl import parse_line, read_lines
    from refstream.streams.producer import publish_shop_events
    from refstream.streams.topics import ensure_topics

    settings = _settings(args)
    ensure_topics(settings)
    path = Path(args.file)

    def events() -> Iterator[Any]:
        with path.open(encoding="utf-8") as stream:
            for number, line in read_lines(stream):
                try:
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
    from refstream.replay.store import ProjectionStore
    from refstream.rewards.rules import load_rules
    from refstream.streams.embedded import EmbeddedRunner

    events_path = Path(args.events)
    if not events_path.is_file():
        raise RefstreamError(f"no events file at {events_path}; create one with "
                             "`refstream generate --out FILE.jsonl`")
    rules = load_rules(Path(args.rules) if args.rules else _default_rules_path())
    db_path = Path(args.db)
    if db_path.exists() and not args.append:
        db_path.unlink()
    store = ProjectionStore(db_path)
    runner = EmbeddedRunner(Settings(), rules, store)
    total_lines = _count_lines(events_path)
    with progress_bar(total_lines, "ev", "run") as advance:
        summary = runner.run_file(events_path, advance)
    _write_dead_letters(db_path, summary.dead_letters)
    counts = {
        name: store.connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        for name in ("referrals", "rewards", "fraud_flags")
    }
    store.close()
    print(f"read {summary.lines} lines: {summary.accepted} events applied, "
          f"{summary.duplicates} duplicates ignored, {len(summary.dead_letters)} dead letters "
          f"({summary.events_per_second:,.0f} events/s)")
    print(f"rules {rules.version}; wrote {db_path}: " +
          ", ".join(f"{n} {c}" for n, c in counts.items()))
    if summary.dead_letters:
        print(f"dead letters: {db_path.with_suffix('.dlq.jsonl')}")
        for letter in summary.dead_letters[:5]:
            print(f"  {letter.error[:200]}")
    return EXIT_PROBLEM if (args.strict and summary.dead_letters) else EXIT_OK


def _count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))


def _write_dead_letters(db_path: Path, letters: list[Any]) -> None:
    target = db_path.with_suffix(".dlq.jsonl")
    if not letters:
        target.unlink(missing_ok=True)
        return
    with target.open("w", encoding="utf-8") as out:
        for letter in letters:
            out.write(json.dumps({
                "source": letter.source_topic, "line": letter.source_offset,
                "shop_id": letter.shop_id, "error": letter.error,
                "original": letter.original.decode("utf-8", "replace"),
            }) + "\n")


# ---------------------------------------------------------------------------- kafka runtime


def cmd_topics(args: argparse.Namespace) -> int:
    from refstream.streams.topics import TopicNames, ensure_topics, topic_specs

    settings = _settings(args)
    if args.action == "list":
        for spec in topic_specs(TopicNames.from_settings(settings), settings.partitions):
            print(f"{spec.name:28} partitions={spec.partitions} {spec.config}  # {spec.purpose}")
        return EXIT_OK
    created = ensure_topics(settings)
    print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from refstream.streams.worker import run_worker

    return run_worker(_settings(args), args)


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
                         description="Generate realistic shop events (funnel per DOMAIN.md, "
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
                         description="Embedded pipeline: the file's line order is the log "
                                     "order. Writes referrals, rewards, fraud_flags and the "
                                     "other projection tables to --db; invalid lines go to "
                                     "<db>.dlq.jsonl with file:line and the error.")
    run.add_argument("--events", required=True, help="JSON Lines file of shop events")
    run.add_argument("--rules", help="rules YAML (default: the packaged default rules)")
    run.add_argument("--db", required=True, help="DuckDB file to (re)create")
    run.add_argument("--append", action="store_true", help="keep an existing --db")
    run.add_argument("--strict", action="store_true", help="exit 1 if any line was rejected")
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
    worker.add_argument("--rules", help="rules YAML (default: packaged default)")
    worker.add_argument("--no-ingest", action="store_true", help="run only the pipeline")
    worker.add_argument("--no-pipeline", action="store_true", help="run only ingest")
    worker.add_argument("--loglevel", default="warning")
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except RefstreamError as exc:
        print(f"refstream {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
