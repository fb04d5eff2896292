"""One rules resolution for every command: --rules, else REFSTREAM_RULES_PATH, else the
packaged default; each command says which version it used, and a diff across rules
versions says so plainly."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from refstream.cli.main import main
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.streams.exit_codes import EXIT_OK

DEFAULT = load_rules(default_rules_path())
CASH_PATH = default_rules_path().parent / "cash-second-order.yaml"
CASH = load_rules(CASH_PATH)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("REFSTREAM_RULES_PATH", raising=False)
        assert main(["demo", "--out", str(out), "--shops", "1", "--customers", "150"]) == EXIT_OK
    return out


def _versions(db: Path) -> set[str]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return {row[0] for row in conn.execute(
            "SELECT rules_version FROM referrals UNION SELECT rules_version FROM campaigns"
        ).fetchall()}
    finally:
        conn.close()


def test_replay_reads_the_environment_and_the_diff_names_both_versions(
        demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert CASH.version != DEFAULT.version
    monkeypatch.setenv("REFSTREAM_RULES_PATH", str(CASH_PATH))
    capsys.readouterr()
    db = tmp_path / "replay.duckdb"
    assert main(["replay", "--archive", str(demo / "archive"), "--db", str(db),
                 "--diff-against", str(demo / "refstream.duckdb")]) == EXIT_OK
    captured = capsys.readouterr()
    assert f"rules {CASH.version} from {CASH_PATH} (REFSTREAM_RULES_PATH)" in captured.err
    assert _versions(db) == {CASH.version}
    assert ("note: the two sides ran under different rules versions: "
            f"{demo / 'refstream.duckdb'} with {DEFAULT.version}, {db} with {CASH.version}"
            ) in captured.out


def test_same_rules_no_note(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("REFSTREAM_RULES_PATH", raising=False)
    db = tmp_path / "replay.duckdb"
    assert main(["replay", "--archive", str(demo / "archive"), "--db", str(db),
                 "--diff-against", str(demo / "refstream.duckdb")]) == EXIT_OK
    captured = capsys.readouterr()
    assert f"rules {DEFAULT.version} from {default_rules_path()} (packaged default)" in captured.err
    assert "different rules versions" not in captured.out + captured.err


def test_run_and_compare_models_read_the_environment_and_rules_wins(
        demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REFSTREAM_RULES_PATH", str(CASH_PATH))
    events = demo / "events.jsonl"
    assert main(["run", "--events", str(events), "--db", str(tmp_path / "env.duckdb")]) == EXIT_OK
    assert _versions(tmp_path / "env.duckdb") == {CASH.version}
    assert main(["run", "--events", str(events), "--db", str(tmp_path / "flag.duckdb"),
                 "--rules", str(default_rules_path())]) == EXIT_OK
    assert _versions(tmp_path / "flag.duckdb") == {DEFAULT.version}
    capsys.readouterr()
    assert main(["compare-models", "--archive", str(demo / "archive")]) == EXIT_OK
    captured = capsys.readouterr()
    assert f"rules {CASH.version} from {CASH_PATH} (REFSTREAM_RULES_PATH)" in captured.err


def test_diff_json_says_whether_the_versions_match(
        demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    monkeypatch.setenv("REFSTREAM_RULES_PATH", str(CASH_PATH))
    db = tmp_path / "replay.duckdb"
    assert main(["replay", "--archive", str(demo / "archive"), "--db", str(db)]) == EXIT_OK
    capsys.readouterr()
    assert main(["diff", str(demo / "refstream.duckdb"), str(db), "--format", "json"]) == EXIT_OK
    captured = capsys.readouterr()
    assert json.loads(captured.out)["same_rules_version"] is False
    assert "different rules versions" in captured.err
