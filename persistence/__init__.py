"""What refstream keeps on disk: the DuckDB projection store, the Parquet log archive, the
pipeline's checkpoints and the person vault (SQLite), and the core's pickling codec."""
