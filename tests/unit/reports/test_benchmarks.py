"""KPI status against the scorecard of docs/benchmarks.md: the edges of every band, and the
module stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from refstream.reports import definitions
from refstream.reports.definitions import (
    CLV_PREMIUM_BENCHMARK,
    K_FACTOR_BENCHMARK,
    PARTICIPATION_BAND,
    REFERRAL_CONVERSION_BENCHMARK,
    REFERRAL_RATE_BENCHMARK,
    REVENUE_SHARE_BENCHMARK,
    SHARE_RATE_BENCHMARK,
    STATUS_ABOVE_HEALTHY,
    STATUS_ALERT,
    STATUS_BELOW_HEALTHY,
    STATUS_BELOW_MEDIAN,
    STATUS_HEALTHY,
    STATUS_MEDIAN,
    STATUS_NO_DATA,
    STATUS_TOP_QUARTILE,
    Benchmark,
)


@pytest.mark.parametrize(("benchmark", "value", "status"), [
    # share rate: alert < 3%, median ~5%, top quartile 5-15%
    (SHARE_RATE_BENCHMARK, 0.029, STATUS_ALERT),
    (SHARE_RATE_BENCHMARK, 0.03, STATUS_BELOW_MEDIAN),
    (SHARE_RATE_BENCHMARK, 0.05, STATUS_MEDIAN),
    (SHARE_RATE_BENCHMARK, 0.051, STATUS_TOP_QUARTILE),
    # referral conversion: alert < 2%, median 3-5%, top quartile 8%+
    (REFERRAL_CONVERSION_BENCHMARK, 0.019, STATUS_ALERT),
    (REFERRAL_CONVERSION_BENCHMARK, 0.025, STATUS_BELOW_MEDIAN),
    (REFERRAL_CONVERSION_BENCHMARK, 0.06, STATUS_MEDIAN),
    (REFERRAL_CONVERSION_BENCHMARK, 0.08, STATUS_TOP_QUARTILE),
    # referral rate: alert < 1%, median ~2.35%, top quartile 20%+
    (REFERRAL_RATE_BENCHMARK, 0.009, STATUS_ALERT),
    (REFERRAL_RATE_BENCHMARK, 0.02, STATUS_BELOW_MEDIAN),
    (REFERRAL_RATE_BENCHMARK, 0.0235, STATUS_MEDIAN),
    (REFERRAL_RATE_BENCHMARK, 0.20, STATUS_TOP_QUARTILE),
    # CLV premium: alert at or below parity, median +16-25%, top quartile higher
    (CLV_PREMIUM_BENCHMARK, 0.0, STATUS_ALERT),
    (CLV_PREMIUM_BENCHMARK, 0.10, STATUS_BELOW_MEDIAN),
    (CLV_PREMIUM_BENCHMARK, 0.25, STATUS_MEDIAN),
    (CLV_PREMIUM_BENCHMARK, 0.26, STATUS_TOP_QUARTILE),
    # revenue share: alert < 5%, median 10-30%, top quartile the upper end
    (REVENUE_SHARE_BENCHMARK, 0.049, STATUS_ALERT),
    (REVENUE_SHARE_BENCHMARK, 0.07, STATUS_BELOW_MEDIAN),
    (REVENUE_SHARE_BENCHMARK, 0.20, STATUS_MEDIAN),
    (REVENUE_SHARE_BENCHMARK, 0.30, STATUS_TOP_QUARTILE),
    # K-factor: near zero, median 0.04-0.45, top quartile > 0.5
    (K_FACTOR_BENCHMARK, 0.005, STATUS_ALERT),
    (K_FACTOR_BENCHMARK, 0.02, STATUS_BELOW_MEDIAN),
    (K_FACTOR_BENCHMARK, 0.45, STATUS_MEDIAN),
    (K_FACTOR_BENCHMARK, 0.51, STATUS_TOP_QUARTILE),
])
def test_status_bands(benchmark: Benchmark, value: float, status: str) -> None:
    assert benchmark.status(value) == status


def test_domain_k_factor_example() -> None:
    # docs/benchmarks.md: 4 invites per customer converting at 12.5% give K = 0.5. "> 0.5" is the
    # top quartile, so 0.5 itself is rated median (above the 0.04-0.45 band, not above 0.5).
    k = 4 * 0.125
    assert k == 0.5
    assert K_FACTOR_BENCHMARK.status(k) == STATUS_MEDIAN


def test_participation_band_and_missing_values() -> None:
    assert PARTICIPATION_BAND.status(0.04) == STATUS_BELOW_HEALTHY
    assert PARTICIPATION_BAND.status(0.10) == STATUS_HEALTHY
    assert PARTICIPATION_BAND.status(0.16) == STATUS_ABOVE_HEALTHY
    assert SHARE_RATE_BENCHMARK.status(None) == STATUS_NO_DATA
    assert PARTICIPATION_BAND.status(None) == STATUS_NO_DATA


def test_reports_module_is_pure() -> None:
    # The report SQL is text: its module imports no DuckDB (reports/results.py runs it), only
    # the status vocabulary its statements spell their literals from.
    tree = ast.parse(Path(definitions.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses", "typing", "refstream.schemas.status"}


def test_every_kpi_names_its_definition_and_sql_columns() -> None:
    for kpi in definitions.SCORECARD:
        assert kpi.definition and kpi.numerator and kpi.denominator
        for column in ("shop_id", "currency", "numerator", "denominator", "value"):
            assert column in kpi.sql, (kpi.name, column)
