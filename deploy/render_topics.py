"""Renders deploy/topics.yaml from the topic specs in code (`refstream.streams.topics`).

The YAML is for people and GitOps tools; the code stays the source: `--check` fails when stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames, topic_specs

TOPICS_YAML = Path(__file__).with_name("topics.yaml")

_HEADER = """\
# Kafka topics of refstream, generated from refstream.streams.topics.topic_specs with the
# default settings. Do not edit: change streams/topics.py, then run
#   python -m refstream.deploy.render_topics
# (tests/unit/test_deploy_artifacts.py fails while this file and the code disagree).
# `refstream topics create` creates these with REFSTREAM_PARTITIONS partitions and
# REFSTREAM_REPLICATION_FACTOR replicas; this file shows a production cluster's 3 replicas
# (deploy/k8s/configmap.yaml), with min.insync.replicas 2 (1 below three replicas).
# Prefixes follow REFSTREAM_TOPIC_PREFIX and REFSTREAM_SHOP_TOPIC_PREFIX.
"""

# What a production cluster runs (deploy/k8s/configmap.yaml); the local broker has one.
PRODUCTION_REPLICATION_FACTOR = 3


def _default(field_name: str) -> Any:
    # Field defaults, not Settings(): the file must not depend on who renders it where.
    return Settings.model_fields[field_name].default


def render_topics_yaml() -> str:
    names = TopicNames(_default("shop_topic_prefix"), _default("topic_prefix"))
    partitions: int = _default("partitions")
    document = {
        "defaults": {"partitions": partitions,
                     "replication_factor": PRODUCTION_REPLICATION_FACTOR},
        "topics": [
            {"name": spec.name, "partitions": spec.partitions, "purpose": spec.purpose,
             "config": dict(sorted(spec.config.items()))}
            for spec in topic_specs(names, partitions, PRODUCTION_REPLICATION_FACTOR)
        ],
    }
    return _HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=False,
                                    width=100)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=TOPICS_YAML,
              show_default=True, help="file to write")
@click.option("--check", is_flag=True,
              help="write nothing; exit 1 if the file differs from the code")
def render_command(out: Path, check: bool) -> int:
    """Write deploy/topics.yaml from the topic specs in streams/topics.py."""
    rendered = render_topics_yaml()
    if check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != rendered:
            print(f"{out} is stale; run python -m refstream.deploy.render_topics",
                  file=sys.stderr)
            return 1
        print(f"{out} matches the topic specs")
        return 0
    out.write_text(rendered, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m refstream.deploy.render_topics [--check] [--out FILE]`; the exit status."""
    try:
        result = render_command.main(args=argv, standalone_mode=False,
                                     prog_name="python -m refstream.deploy.render_topics")
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return int(result)


if __name__ == "__main__":
    sys.exit(main())
