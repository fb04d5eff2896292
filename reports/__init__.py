"""Analyst reports: KPI definitions and report SQL, running them read-only on DuckDB, rendering
for a terminal, CSV, JSON and a self-contained HTML file, and the fraud review queue."""
