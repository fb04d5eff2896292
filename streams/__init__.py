"""The Kafka runtime: the faust app and its stages (ingest, pipeline, archiver), the embedded
runner, topics, producers, DLQ, finance consumer, projector, metrics and settings."""
