"""The demo a newcomer sees first is believable: the synthetic month lands in the scorecard's
bands (docs/benchmarks.md) where the issue named them, and it has no dead letters."""

from __future__ import annotations

import duckdb
import pytest

from refstream.cli.main import main
from refstream.reports.definitions import ALL_SHOPS
from refstream.reports.results import scorecard
from refstream.streams.exit_codes import EXIT_OK

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_scorecard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    out = tmp_path_factory.mktemp("demo") / "demo"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("REFSTREAM_RULES_PATH", raising=False)
        assert main(["demo", "--out", str(out)]) == EXIT_OK  # the defaults `make demo` uses
    # The generated month goes through `run` without a single dead letter (exit 0, not 3).
    # Checked against a clock after the simulated period, as `demo` does: the generated month
    # may run past today, and ingest dead-letters events dated ahead of its clock.
    assert main(["run", "--events", str(out / "events.jsonl"), "--db", str(out / "again.duckdb"),
                 "--wall-clock", "2027-06-01T00:00:00Z"]) == EXIT_OK
    conn = duckdb.connect(str(out / "refstream.duckdb"), read_only=True)
    try:
        return {r.kpi: r.value for r in scorecard(conn)
                if r.shop_id == ALL_SHOPS and r.value is not None}
    finally:
        conn.close()


def test_referred_customers_are_worth_16_to_25_percent_more(
        demo_scorecard: dict[str, float]) -> None:
    assert 0.16 <= demo_scorecard["clv-premium"] <= 0.25


def test_participation_is_in_the_healthy_band(demo_scorecard: dict[str, float]) -> None:
    assert 0.05 <= demo_scorecard["participation-rate"] <= 0.15


def test_no_headline_kpi_is_in_alert(demo_scorecard: dict[str, float]) -> None:
    from refstream.reports.definitions import KPIS

    alerts = [name for name, value in demo_scorecard.items()
              if KPIS[name].rating.status(value) == "alert"]
    assert alerts == []
