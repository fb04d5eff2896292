"""Which rules file a job folds events with: `--rules`, else REFSTREAM_RULES_PATH, else the
packaged default; the job says on stderr which version it used and why."""

from __future__ import annotations

import sys
from pathlib import Path

from refstream.rewards.rules import Rules, default_rules_path, load_rules
from refstream.streams.settings import Settings


def resolve_rules_path(path: str | None) -> tuple[Path, str]:
    """The rules file every command uses, and why: `--rules`, else REFSTREAM_RULES_PATH,
    else the packaged default."""
    if path:
        return Path(path), "--rules"
    configured = Settings().rules_path
    if configured is not None:
        return Path(configured), "REFSTREAM_RULES_PATH"
    return Path(default_rules_path()), "packaged default"


def announced_rules(path: str | None) -> Rules:
    """The rules resolved from `path`, loaded; prints `rules <version> from <file> (<why>)`."""
    resolved, why = resolve_rules_path(path)
    rules = load_rules(resolved)
    print(f"rules {rules.version} from {resolved} ({why})", file=sys.stderr)
    return rules
