"""Throughput and latency through the real broker, against raw aiokafka in the same run.

  ingest      shop topics -> ingest -> refstream.log
  stage       refstream.log (already filled) -> pipeline stage -> derived topics
  whole path  shop topics -> ingest -> log -> pipeline -> derived topics, in one worker
              process and with ingest and the pipeline in processes of their own
  latency     append to refstream.log -> derived event sent, at a steady rate (p50/p99)
  checkpoint  the pipeline state of N log events checkpointed: in the worker vs. forked

Baseline: one aiokafka consumer + producer copying the same bytes (the shop topics' for ingest
and the whole path, the log's for the stage) to a sink topic, on the same broker in the same
run, just before and just after each worker run (the ratio uses their mean time), after two
uncounted copies that warm the broker up. Rates are end to end, ingest's event-time merge's
hold of up to a second included (`WorkerRun`); with more than one worker the events are published
once every worker is ready (`Setup`). Each worker run also reports the CPU its worker
processes used per event (less moved by the machine's load than the rate), by tenth of
the run beside the broker's (when it started the broker), the CPU raw aiokafka's copy used
per event, what 0.5 of raw allows one process on one core, and its
checkpoints (how long they held the event loop, how long the snapshot took). `--profile`
samples each worker with py-spy (GIL-holding samples) and prints the top costs. Uses
KAFKA_BOOTSTRAP_SERVERS, or starts a LocalKafka broker on free ports. Run from the repository
root with PYTHONPATH=. (it reuses the test helpers):

    PYTHONPATH=. .venv/bin/python bench/bench_kafka.py --events 100000 [--profile]

The last line is `whole path: X events/s (R of raw aiokafka); p99 Y ms at 2000 events/s`
for one process, then, on the same line, those figures with ingest and the pipeline as two.
The whole path runs three times per layout (`--whole-repeats`), the layouts taking turns:
X and R are the run with the median ratio, and every run's ratio follows in brackets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import psutil
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from refstream.deploy.kafka_launcher import LocalKafka, free_ports
from refstream.persistence.checkpoint import CheckpointStore
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.streams.batch_produce import PartitionedSender
from refstream.streams.pipeline_runtime import PipelineRuntime
from refstream.streams.producer import kafka_producer
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import events_for_target, iter_shop_events
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic, wait_for


def encoded_events(count: int, shops: int = 3) -> list[tuple[str, bytes, bytes]]:
    """(event type, key, Avro bytes) for about `count` generated shop events of `shops`
    shops (their customers split among them)."""
    codec = Codec()
    config = events_for_target(count, seed=42)
    if shops != config.shops:
        config = replace(config, shops=shops, customers_per_shop=max(
            1, config.customers_per_shop * config.shops // shops))
    out = []
    for event in iter_shop_events(config):
        out.append((event.event_type, event.shop_id.encode(), codec.encode(event)))
        if len(out) >= count:
            break
    return out


def publish(settings: object, names: TopicNames, events: list[tuple[str, bytes, bytes]],
            rate: float | None = None) -> None:
    producer = kafka_producer(settings)  # type: ignore[arg-type]
    started = time.perf_counter()
    for i, (event_type, key, value) in enumerate(events):
        producer.send(names.shop(event_type), key=key, value=value)
        if rate is not None:
            ahead = i / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    producer.close()


def publish_burst(bootstrap: str, names: TopicNames,
                  events: list[tuple[str, bytes, bytes]]) -> None:
    """The events on their shop topics as fast as one aiokafka producer takes them: a record
    batch per partition, built by the workers' own `PartitionedSender` (the partitions
    `publish` chooses: murmur2 of the key)."""
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=5,
                                    max_batch_size=1 << 20, max_request_size=16 << 20)
        await producer.start()
        try:
            await PartitionedSender(producer).send(
                (names.shop(event_type), key, value) for event_type, key, value in events)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


@dataclass(frozen=True)
class RawCopy:
    """One raw aiokafka copy: its wall time, and the CPU its process (this one) used."""

    seconds: float
    cpu_seconds: float


def timed_raw_copy(bootstrap: str, topics: list[str], sink: str, count: int, turn: str
                   ) -> RawCopy:
    """`raw_copy` in a consumer group of its own (`turn`: before or after a worker run)."""
    cpu = time.process_time()
    seconds = asyncio.run(raw_copy(bootstrap, topics, sink, count,
                                   group=f"raw-{turn}-{sink}"))
    return RawCopy(seconds, time.process_time() - cpu)


async def raw_copy(bootstrap: str, topics: list[str], sink: str, count: int, *,
                   group: str) -> float:
    """Seconds for a plain aiokafka consumer+producer to copy `count` records."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=True,
                                max_partition_fetch_bytes=4 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    copied = 0
    started = time.perf_counter()
    try:
        while copied < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for record in records:
                    await producer.send(sink, key=record.key, value=record.value)
                    copied += 1
        await producer.flush()
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()


def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def samples(text: str, name: str, label: str = "") -> list[float]:
    """The values of a metric's samples (with `label`) over every worker's scrape."""
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(name) and label in line and not line.startswith("#")]


def metric(text: str, name: str, label: str = "") -> float:
    return sum(samples(text, name, label))


def histogram_buckets(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram, by upper bound."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        match = re.match(rf'{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)', line)
        if match:
            buckets[float(match.group(1))] = float(match.group(2))
    return buckets


def histogram_quantile(text: str, name: str, q: float, since: str = "") -> float:
    """The q-quantile of a histogram (linear within a bucket, as Prometheus does); with
    `since`, of the observations made after that earlier scrape."""
    before = histogram_buckets(since, name) if since else {}
    buckets = sorted((bound, count - before.get(bound, 0.0))
                     for bound, count in histogram_buckets(text, name).items())
    total = buckets[-1][1] if buckets else 0
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= q * total and total:
            if bound == float("inf"):
                return previous_bound
            share = (q * total - previous_count) / max(count - previous_count, 1e-9)
            return previous_bound + share * (bound - previous_bound)
        previous_bound, previous_count = bound, count
    return float("nan")


class MachineCpu(NamedTuple):
    """The whole machine's CPU time so far, all cores (`psutil.cpu_times`): what the
    hypervisor ran elsewhere while this machine wanted the core (steal), and what was idle.
    Runs of the same code differed by a third in the workers' CPU per event (session 22):
    steal is one reason a run can cost more that no process here sees."""

    total: float
    steal: float
    idle: float

    @classmethod
    def now(cls) -> MachineCpu:
        t = psutil.cpu_times()
        parts = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        return cls(sum(getattr(t, name, 0.0) for name in parts), getattr(t, "steal", 0.0),
                   t.idle + getattr(t, "iowait", 0.0))

    def since(self, start: MachineCpu) -> MachineCpu:
        return MachineCpu(self.total - start.total, self.steal - start.steal,
                          self.idle - start.idle)

    def describe(self) -> str:
        if self.total <= 0:
            return "the machine's CPU time was not measured"
        return (f"the machine over the run: {self.steal / self.total:.1%} of its CPU time "
                f"stolen by the hypervisor, {self.idle / self.total:.0%} idle")


@dataclass
class WorkerRun:
    """One measured worker run: its rate against the same run's raw aiokafka copy, its
    checkpoints, and (with --profile) where its CPU went."""

    label: str
    events: int
    seconds: float  # end to end: from the workers ready to the last record out
    # When the first records came out. Ingest holds each record in the event-time merge for
    # up to REFSTREAM_MERGE_IDLE_S (1 s by default; with the benchmark's shops nearly every
    # record waits it out, since some topic of its shop has nothing buffered), and that hold
    # stays inside the rate: a rate from the first records out to the last was tried
    # (session 17) and overstated the whole path in one process, where the merge let a
    # backlog out at once for the pipeline to fold faster than the path takes records in
    # (63k events/s where the process's CPU allowed 35k).
    first_out_s: float
    # raw aiokafka's copy just before and just after the workers ran: the machine's speed
    # drifts within minutes, and one copy alone moved the ratio by up to a third
    raw_before: RawCopy
    raw_after: RawCopy
    # CPU the workers and their snapshot children used during the run: per event, it moves
    # less with the machine's load than the rate does (the broker's and the benchmark's own
    # CPU are not in it)
    cpu: WorkerCpu
    metrics_text: str = ""
    profile: list[str] = field(default_factory=list)
    processes: int = 1  # worker processes that ran it
    # The workers' own CPU per event (µs) over each tenth of the run after the first records
    # out (as finely as the polls saw it): how much it moves within one run. The broker's
    # over the same stretches, when the benchmark started it: whether the workers' costlier
    # tenths are those in which the broker, on the same two cores, worked hardest.
    tenths: list[float] = field(default_factory=list)
    broker_tenths: list[float] = field(default_factory=list)
    machine: MachineCpu = field(default_factory=lambda: MachineCpu(0.0, 0.0, 0.0))
    timeline: list[str] = field(default_factory=list)  # with --timeline

    @property
    def raw_seconds(self) -> float:
        return (self.raw_before.seconds + self.raw_after.seconds) / 2

    @property
    def raw_cpu_per_event(self) -> float:
        """Seconds of CPU raw aiokafka's process spent per record copied (one hop: consume
        and produce), the mean of its two copies."""
        return (self.raw_before.cpu_seconds + self.raw_after.cpu_seconds) / 2 / self.events

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def raw_rate(self) -> float:
        return self.events / self.raw_seconds

    @property
    def ratio(self) -> float:
        """Its rate over raw aiokafka's in the same run: the figure the goals are set in."""
        return self.rate / self.raw_rate

    def spread(self) -> str:
        if len(self.tenths) < 2:
            return (f"{self.label}: worker CPU per event not sampled within the run; "
                    f"{self.cpu.kernel(self.events)}; {self.machine.describe()}")
        ordered = sorted(self.tenths)
        line = (f"{self.label}: worker CPU per event by tenth of the run (µs): "
                + " ".join(f"{cost:.1f}" for cost in self.tenths)
                + f"; lowest {ordered[0]:.1f}, median {ordered[len(ordered) // 2]:.1f}, "
                f"highest {ordered[-1]:.1f}")
        if self.broker_tenths:
            line += ("; the broker's over the same tenths: "
                     + " ".join(f"{cost:.1f}" for cost in self.broker_tenths))
        return f"{line}; {self.cpu.kernel(self.events)}; {self.machine.describe()}"

    def checkpoints(self) -> str:
        text = self.metrics_text
        count = metric(text, "refstream_checkpoint_seconds_count")
        if not count:
            return f"{self.label}: no checkpoint metrics"
        held = metric(text, "refstream_checkpoint_seconds_sum")
        snap_count = metric(text, "refstream_checkpoint_snapshot_seconds_count")
        snap = metric(text, "refstream_checkpoint_snapshot_seconds_sum")
        line = (f"{self.label}: {count:.0f} checkpoints held the event loop {held:.2f} s in all "
                f"({held / count * 1000:.0f} ms each, {held / self.seconds:.0%} of the run)")
        if snap_count:
            line += (f"; {snap_count:.0f} snapshots, snapshot + commit "
                     f"{snap / snap_count * 1000:.0f} ms each ({snap / self.seconds:.0%} of the "
                     "run in a snapshot)")
        acknowledged = metric(text, "refstream_checkpoint_acknowledgements_total")
        if acknowledged:
            line += f"; between snapshots, {acknowledged:.0f} acknowledged offsets recorded"
        return line

    def collections(self) -> str:
        """The cyclic GC's pauses in the workers since they started (their metrics): a young
        collection scans what was kept since the one before, so it costs more as the state
        grows, and every stage of the process waits for it."""
        text = self.metrics_text
        if "refstream_gc_pause_seconds_count" not in text:
            return f"{self.label}: no garbage-collector metrics"
        parts, total = [], 0.0
        for name, generations in (("young", ("0",)), ("older", ("1", "2"))):
            labels = [f'generation="{g}"' for g in generations]
            count = sum(metric(text, "refstream_gc_pause_seconds_count", g) for g in labels)
            paused = sum(metric(text, "refstream_gc_pause_seconds_sum", g) for g in labels)
            longest = max((value for g in labels
                           for value in samples(text, "refstream_gc_longest_pause_seconds", g)),
                          default=0.0)
            total += paused
            parts.append(f"{count:.0f} {name} collections, {paused:.2f} s"
                         + (f" (longest {longest * 1000:.0f} ms)" if count else ""))
        workers = "workers" if self.processes > 1 else "worker"
        return (f"{self.label}: the cyclic GC paused the {workers} {total:.2f} s since start "
                f"({total / self.seconds:.0%} of the run's length): " + "; ".join(parts))


class Profiler:
    """py-spy sampling one process while it holds the GIL; `stop()` returns the breakdown."""

    # (area, substrings of a frame's file or function): the first area found walking from
    # the sampled frame towards the root takes the sample.
    AREAS = [
        ("checkpoint: fork, pickle, SQLite", ("checkpoint", "pickle", "sqlite", "snapshot")),
        ("ingest: validation (pydantic)", ("pydantic",)),
        ("ingest: pseudonymising (HMAC)", ("schemas/privacy", "vault")),
        ("Avro decode/encode", ("schemas/codec", "fastavro", "avro", "schemas/events")),
        # The compiled core runs as native code, which py-spy (without --native) counts as
        # time of the Python frame that called it: PipelineRuntime.handle's own time.
        ("the core (compiled; + the offset gate)", ("projections/", "fraud/", "rewards/",
                                                    "PipelineRuntime.handle")),
        ("ingest: dedupe, edge checks, dead letters", ("streams/ingest.py", "schemas/shop")),
        ("ingest: event-time merge", ("streams/merge",)),
        ("metrics (prometheus_client)", ("prometheus_client", "streams/metrics")),
        ("aiokafka (fetch, produce, protocol)", ("aiokafka", "kafka/")),
        ("refstream stage loops, batching", ("streams/pipeline_stage", "streams/ingest_stage",
                                             "streams/stage", "streams/batch_produce",
                                             "streams/faust_app", "streams/pipeline_runtime")),
        ("faust/mode per-message machinery", ("faust/", "mode/")),
        ("asyncio event loop", ("asyncio", "uvloop")),
    ]

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
             "--format", "raw", "--output", str(out), "--rate", "200", "--gil",
             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, top: int = 12) -> list[str]:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if not self.out.exists():
            return ["(py-spy wrote no profile: is ptrace allowed here?)"]
        areas: Counter[str] = Counter()
        functions: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            functions[frames[-1]] += count
            areas[self._area(frames)] += count
        if not total:
            return ["(no samples)"]
        lines = [f"  {share / total:6.1%}  {area}" for area, share in areas.most_common()]
        lines.append(f"  top functions (own time, {total:,} samples):")
        lines += [f"  {share / total:6.1%}  {name[:110]}"
                  for name, share in functions.most_common(top)]
        return lines

    def _area(self, frames: list[str]) -> str:
        for frame in reversed(frames):
            for area, marks in self.AREAS:
                if any(mark in frame for mark in marks):
                    return area
        return "other"


@dataclass(frozen=True)
class Setup:
    """How the measured workers run: how many, over how many partitions, with which extra
    environment (REFSTREAM_MERGE_IDLE_S, REFSTREAM_RULES_PATH, ...), and whether the events
    of ingest's and the whole path's runs are published only once every worker is ready.

    With the events published first, the first worker ready starts on all of them while the
    others join: in a two-worker run, half the events were out before the second one was
    ready, and the partitions it then took over had their state rebuilt from the log inside
    the measured time. Published after every worker is ready, the group is settled before
    the first event exists (raw aiokafka then copies the same records from the warm-up's
    topics). The pipeline stage's runs read a log filled before they start either way: with
    more than one worker, its rate includes that start."""

    workers: int = 1
    partitions: int = 3
    env: tuple[tuple[str, str], ...] = ()
    publish_after_ready: bool = False
    # The broker this benchmark started (None: KAFKA_BOOTSTRAP_SERVERS named another): its
    # CPU is sampled beside the workers', tenth by tenth.
    broker_pid: int | None = None

    def with_env(self, **env: str) -> Setup:
        return replace(self, env=(*dict(self.env).items(), *env.items()))


@contextmanager
def worker_env(setup: Setup) -> Iterator[None]:
    """The setup's environment for the worker processes started inside (they inherit it)."""
    saved = {name: os.environ.get(name) for name, _ in setup.env}
    os.environ.update(dict(setup.env))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_workers(settings: Settings, setup: Setup, args: list[str], where: Path
                  ) -> list[WorkerProcess]:
    """`setup.workers` workers of one deployment (one app id, so one group per stage), each
    with its own data directory; returns them ready."""
    workers: list[WorkerProcess] = []
    with worker_env(setup):
        try:
            for index in range(setup.workers):
                workers.append(WorkerProcess(
                    settings.model_copy(update={"data_dir": where / f"worker-{index}"}),
                    args).start(wait=False))
            for worker in workers:
                worker.wait_ready()
            # A rebalance that a later worker's join started may have left an earlier one
            # without partitions for a moment: ready means all of them at once.
            wait_for(lambda: all(worker.ready() for worker in workers), 90,
                     "every worker ready at once")
        except BaseException:
            for worker in workers:
                worker.stop()
            raise
    return workers


class WorkerCpu(NamedTuple):
    """CPU time (user + system): the worker processes' own, and their snapshot children's
    (those that have ended), which run beside them on another core when there is one; of
    the processes' own, the part in the kernel, and their minor page faults (first touches
    of memory, copy-on-write after a snapshot's fork), which the kernel's part mostly pays."""

    own: float
    children: float
    system: float = 0.0
    minor_faults: int = 0

    @property
    def total(self) -> float:
        return self.own + self.children

    def since(self, earlier: WorkerCpu) -> WorkerCpu:
        return WorkerCpu(self.own - earlier.own, self.children - earlier.children,
                         self.system - earlier.system, self.minor_faults - earlier.minor_faults)

    def kernel(self, events: int) -> str:
        """What the kernel's part was, for `events` events."""
        if self.own <= 0 or events <= 0:
            return "the workers' kernel time was not measured"
        return (f"{self.system / self.own:.0%} of the workers' own CPU in the kernel, "
                f"{self.minor_faults / events:.2f} minor page faults per event")


def _minor_faults(pid: int) -> int:
    """The process's minor page faults so far (/proc/<pid>/stat, field 10; 0 elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # Fields after the command name (in parentheses, which may hold spaces) start at field 3.
    return int(text.rsplit(")", 1)[1].split()[10 - 3])


def worker_cpu(workers: list[WorkerProcess]) -> WorkerCpu:
    """The CPU the worker processes and their ended snapshot children have used so far."""
    own = children = system = 0.0
    faults = 0
    for worker in workers:
        assert worker.process is not None
        times = psutil.Process(worker.process.pid).cpu_times()
        own += times.user + times.system
        system += times.system
        children += times.children_user + times.children_system
        faults += _minor_faults(worker.process.pid)
    return WorkerCpu(own, children, system, faults)


class Measured(NamedTuple):
    """What `_measure_workers` saw of one run (the fields of `WorkerRun` it fills)."""

    seconds: float
    first_out_s: float
    cpu: WorkerCpu
    metrics_text: str
    profile: list[str]
    tenths: list[float]
    broker_tenths: list[float]
    machine: MachineCpu
    timeline: list[str]


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 for none)."""
    if pid is None:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _measure_workers(workers: list[WorkerProcess], progress: Callable[[str], float],
                     target: int, profile_to: Path | None, *, timeout: float = 3600,
                     start: Callable[[], None] | None = None, broker_pid: int | None = None,
                     timeline: Callable[[str], str] | None = None) -> Measured:
    """Seconds from the workers being ready (and `start()`, run then, e.g. publishing the
    events) until `progress` (of the workers' metrics text) reaches `target`, and until it
    first moved; the CPU the workers used meanwhile, the metrics of all, the first one's
    profile, and the workers' own CPU per event (µs) over each tenth of the run from the
    first records out (and the broker's over the same tenths, given its pid).

    Each poll scrapes the workers' /metrics, which costs them CPU (a whole exposition per
    scrape: at ten a second, about 1% of a worker's samples): until the first records are
    out and near the end it polls every 50 ms, far from the end every half second, then at
    a quarter of the time the rate so far leaves: the first and last records are seen
    sharply for a fraction of the scrapes. With `timeline` (a row from the same metrics
    text) it polls every 100 ms throughout and keeps a row per poll, from the start, with the
    seconds since and the workers' own CPU seconds so far: a diagnostic (more scrapes in the
    middle of a run than the polling above makes)."""
    sampled = workers[0].process
    assert sampled is not None
    profiler = Profiler(sampled.pid, profile_to) if profile_to else None
    cpu_started = worker_cpu(workers)
    machine_started = MachineCpu.now()
    started = time.perf_counter()
    if start is not None:
        start()
    deadline = time.monotonic() + timeout
    first_out_s: float | None = None
    tenths: list[float] = []
    broker_tenths: list[float] = []
    # (events, own CPU, the broker's CPU) where this tenth began
    mark: tuple[float, float, float] | None = None
    rows: list[str] = []
    while True:
        text = "\n".join(worker.metrics() for worker in workers)
        count = progress(text)
        own, broker = worker_cpu(workers).own, _cpu_seconds(broker_pid)
        if timeline is not None:
            since = time.perf_counter() - started
            rows.append(f"{since:6.2f} s  CPU {own - cpu_started.own:5.2f} s  {timeline(text)}")
        if count > 0 and (mark is None or count >= target or
                          count - mark[0] >= target / 10):
            if mark is not None:
                tenths.append((own - mark[1]) / (count - mark[0]) * 1e6)
                if broker_pid is not None:
                    broker_tenths.append((broker - mark[2]) / (count - mark[0]) * 1e6)
            mark = (count, own, broker)
        if count >= target:
            break
        elapsed = time.perf_counter() - started
        assert time.monotonic() < deadline, workers[0].log_tail()
        for worker in workers:
            assert worker.process is not None
            assert worker.process.poll() is None, f"a worker exited: {worker.log_tail()}"
        if count > 0 and first_out_s is None:
            first_out_s = elapsed
        left_s = (target - count) * elapsed / count if count > 0 else 0.0
        time.sleep(0.1 if timeline else min(0.5, max(0.05, left_s / 4)))
    seconds = time.perf_counter() - started
    cpu = worker_cpu(workers).since(cpu_started)
    machine = MachineCpu.now().since(machine_started)
    profile = profiler.stop() if profiler else []
    return Measured(seconds, seconds if first_out_s is None else first_out_s, cpu,
                    "\n".join(worker.metrics() for worker in workers), profile, tenths,
                    broker_tenths, machine, rows)


def published(bootstrap: str, where: Path, events: list[tuple[str, bytes, bytes]],
              setup: Setup, *, fill: bool = True) -> tuple[Settings, TopicNames]:
    """Topics no other run shares, the events published on their shop topics (unless not
    `fill`), and an empty `<prefix>.raw` topic for raw aiokafka's copies."""
    settings = isolated_settings(bootstrap, where, partitions=setup.partitions,
                                 tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    if fill:
        publish(settings, names, events)
    _create_topic(bootstrap, names.prefix + ".raw", settings.partitions)
    return settings, names


def warm_up_broker(bootstrap: str, tmp: Path, events: list[tuple[str, bytes, bytes]],
                   setup: Setup) -> tuple[str, TopicNames]:
    """Raw aiokafka copies of the events on topics of their own, before anything is measured:
    a fresh broker's JVM speeds up as it compiles its hot paths, and without a warm-up the
    first measured path met a raw rate a fifth to a third below the last one's. Returns a
    line saying how fast, and those topics (the events stay on them, for runs that publish
    theirs only once the workers are ready)."""
    _, names = published(bootstrap, tmp / "warm-up", events, setup)
    rates = [len(events) / timed_raw_copy(bootstrap, list(names.shop_topics),
                                       names.prefix + ".raw", len(events),
                                       f"warm-up-{turn}").seconds
             for turn in range(2)]
    return ("broker warm-up, raw aiokafka: " + " / ".join(f"{rate:,.0f}" for rate in rates),
            names)


def path_label(pipeline: bool, split: bool) -> str:
    return "whole path, split" if split else "whole path" if pipeline else "ingest"


def run_path(bootstrap: str, tmp: Path, events: list[tuple[str, bytes, bytes]],
             pipeline: bool, profile: bool, *, setup: Setup, warmed: TopicNames,
             label: str = "", split: bool = False, timeline: bool = False) -> WorkerRun:
    """Ingest alone, or the whole path, against raw aiokafka: in each worker process, or
    (`split`) with ingest and the pipeline in processes of their own, `setup.workers` of
    each (the documented layout for more than a small shop's volume). `warmed`: the
    warm-up's topics, which hold the same events (raw aiokafka's source when the run's own
    are published only once the workers are ready)."""
    label = label or path_label(pipeline, split)
    where = tmp / label.replace(" ", "-")
    burst = setup.publish_after_ready
    settings, names = published(bootstrap, where, events, setup, fill=not burst)
    source = warmed if burst else names
    raw = (bootstrap, list(source.shop_topics), names.prefix + ".raw", len(events))
    before = timed_raw_copy(*raw, "before")
    if split:
        # The pipeline first: ingest, ready, starts at once, and the clock starts then (as
        # in one process); ingest started first would run ahead while the pipeline starts.
        pipelines = start_workers(settings, setup, ["--no-ingest"], settings.data_dir)
        try:  # ingest first in the list: it is the one `--profile` samples
            workers = start_workers(settings.model_copy(update={
                "app_id": settings.app_id + "-ingest"}), setup, ["--no-pipeline"],
                settings.data_dir / "ingest") + pipelines
        except BaseException:
            for worker in pipelines:
                worker.stop()
            raise
    else:
        workers = start_workers(settings, setup, [] if pipeline else ["--no-pipeline"],
                                settings.data_dir)
    try:
        counted = "refstream_events_in_total" if pipeline else "refstream_events_out_total"
        seen = _measure_workers(
            workers, lambda text: metric(text, counted, f'topic="{names.log}"'), len(events),
            tmp / f"{label}.profile" if profile else None,
            start=(lambda: publish_burst(bootstrap, names, events)) if burst else None,
            broker_pid=setup.broker_pid, timeline=path_row(names) if timeline else None)
    finally:
        for worker in workers:
            worker.stop()
    return worker_run(label, len(events), seen, (before, timed_raw_copy(*raw, "after")),
                      processes=len(workers))


def path_row(names: TopicNames) -> Callable[[str], str]:
    """A timeline row of the path's counts: shop records read, records waiting in ingest's
    event-time merge, log appends, log records the pipeline folded."""
    def row(text: str) -> str:
        read = sum(sum(samples(text, "refstream_events_in_total", f'topic="{topic}"'))
                   for topic in names.shop_topics)
        waiting = sum(samples(text, "refstream_ingest_merge_buffered"))
        appended = sum(samples(text, "refstream_events_out_total", f'topic="{names.log}"'))
        folded = sum(samples(text, "refstream_events_in_total", f'topic="{names.log}"'))
        return (f"read {read:9,.0f}  waiting in the merge {waiting:9,.0f}  "
                f"appended {appended:9,.0f}  folded {folded:9,.0f}")
    return row


def run_stage(bootstrap: str, tmp: Path, events: list[tuple[str, bytes, bytes]],
              profile: bool, *, setup: Setup) -> WorkerRun:
    """The pipeline stage alone: the log is filled first (by an ingest-only worker), then
    pipeline-only workers read it; raw aiokafka copies the same log."""
    settings, names = published(bootstrap, tmp / "stage", events, setup)
    with worker_env(setup):
        ingest = WorkerProcess(settings.model_copy(update={"data_dir": tmp / "stage-ingest"}),
                               ["--no-pipeline"]).start()
    try:
        read_topic(bootstrap, names.log, expect=len(events), timeout=3600)
    finally:
        ingest.stop()
    raw = (bootstrap, [names.log], names.prefix + ".raw", len(events))
    before = timed_raw_copy(*raw, "before")
    workers = start_workers(settings, setup, ["--no-ingest"], settings.data_dir)
    try:
        seen = _measure_workers(
            workers, lambda text: metric(text, "refstream_events_in_total",
                                         f'topic="{names.log}"'), len(events),
            tmp / "stage.profile" if profile else None, broker_pid=setup.broker_pid)
    finally:
        for worker in workers:
            worker.stop()
    return worker_run("pipeline stage", len(events), seen,
                      (before, timed_raw_copy(*raw, "after")), processes=len(workers))


def worker_run(label: str, events: int, seen: Measured, raw: tuple[RawCopy, RawCopy], *,
               processes: int) -> WorkerRun:
    """The run of `processes` workers `_measure_workers` saw, between raw aiokafka's copies
    (before, after)."""
    return WorkerRun(label, events, seen.seconds, seen.first_out_s, *raw, seen.cpu,
                     seen.metrics_text, seen.profile, processes, seen.tenths,
                     seen.broker_tenths, seen.machine, seen.timeline)


def run_latency(bootstrap: str, tmp: Path, events: list[tuple[str, bytes, bytes]],
                rate: float, split: bool, *, setup: Setup) -> tuple[float, float, int]:
    settings = isolated_settings(bootstrap, tmp / f"latency-{split}",
                                 partitions=setup.partitions, tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    ingest = None
    with worker_env(setup):
        if split:  # ingest in its own process and consumer group; the worker runs the pipeline
            ingest = WorkerProcess(settings.model_copy(update={
                "app_id": settings.app_id + "-ingest", "data_dir": tmp / "ingest"}),
                ["--no-pipeline"]).start()
        worker = WorkerProcess(settings, ["--no-ingest"] if split else []).start()
    def log_read() -> float:
        return metric(worker.metrics(), "refstream_events_in_total", f'topic="{names.log}"')

    # Steady state only: the first seconds (both stages joining their groups in one
    # process, first-time imports) are a warm-up whose observations are subtracted.
    warm_up = min(len(events) // 5, int(rate * 3))
    try:
        publish(settings, names, events[:warm_up], rate=rate)
        deadline = time.monotonic() + 120
        while log_read() < warm_up and time.monotonic() < deadline:
            time.sleep(0.2)
        before = worker.metrics()
        publish(settings, names, events[warm_up:], rate=rate)
        deadline = time.monotonic() + 120
        while log_read() < len(events) and time.monotonic() < deadline:
            time.sleep(0.2)
        text = worker.metrics()
    finally:
        worker.stop()
        if ingest is not None:
            ingest.stop()
    name = "refstream_processing_latency_seconds"
    return (histogram_quantile(text, name, 0.5, before),
            histogram_quantile(text, name, 0.99, before),
            int(metric(text, f"{name}_count") - metric(before, f"{name}_count")))


def rules_with_lateness(minutes: int, where: Path) -> Path:
    """A rules file for the workers: the shipped rules with `allowed_lateness_minutes` set
    (`Rules.with_lateness`, which stamps the version with it, as a rules change must)."""
    rules = load_rules(default_rules_path()).with_lateness(minutes)
    path = where / f"rules-lateness-{minutes}.yaml"
    path.write_text(yaml.safe_dump(rules.model_dump(mode="json"), sort_keys=False))
    load_rules(path)  # the written file must load as the same rules
    return path


# Events applied after the snapshot, before the acknowledgement checkpoint is timed.
AFTER_SNAPSHOT = 1_000


def checkpoint_costs(count: int, tmp: Path) -> tuple[str, float, float]:
    """The state after `count` log events (one partition, as a worker owning every shop)
    checkpointed in the worker, and forked: what each holds the caller, and in all; then,
    after AFTER_SNAPSHOT more events, a checkpoint between snapshots (their acknowledged
    offset recorded). Also returned: seconds until the forked snapshot is committed, and
    the acknowledgement's seconds."""
    from bench.bench_core import encoded_log

    rules = load_rules(default_rules_path())
    log_values = encoded_log(count, 42, rules, lambda message: print(message, file=sys.stderr))
    names = TopicNames("shop", "bench")
    runtime = PipelineRuntime(rules, Codec(), CheckpointStore(tmp / f"cp-{count}.sqlite"),
                              names)
    held_back = max(0, len(log_values) - AFTER_SNAPSHOT)
    for offset, value in enumerate(log_values[:held_back]):
        runtime.handle(0, offset, value)
    started = time.perf_counter()
    runtime.checkpoint()
    in_worker = time.perf_counter() - started
    size = len(runtime.store.load(names.log, 0).state)  # type: ignore[union-attr]
    runtime.partitions[0].dirty = True
    started = time.perf_counter()
    pending = runtime.begin_background_checkpoint()
    forked = time.perf_counter() - started
    assert pending is not None
    pending.finish()
    total = time.perf_counter() - started
    for offset, value in enumerate(log_values[held_back:], start=held_back):
        runtime.handle(0, offset, value)
    started = time.perf_counter()
    recorded = runtime.acknowledge(runtime.unacknowledged())
    acknowledged = time.perf_counter() - started
    assert recorded == {0: len(log_values)}
    return (f"checkpoint at {held_back:,} events ({size / 1e6:.1f} MB state): in the "
            f"worker {in_worker * 1000:,.0f} ms on the event loop; forked {forked * 1000:,.1f} "
            f"ms on the event loop ({total * 1000:,.0f} ms until committed); between "
            f"snapshots, {len(log_values) - held_back:,} events later: the acknowledged offset "
            f"recorded in {acknowledged * 1000:,.1f} ms"), total, acknowledged


# --whole-layouts and --latency-layouts: which layouts run, as `split` values
LAYOUTS = {"one": (False,), "split": (True,), "both": (False, True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000,
                        help="shop events through each measured path (default 100,000)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s for latency")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--latency-layouts", choices=list(LAYOUTS), default="both",
                        help="latency with ingest and pipeline in one process, in two, or both")
    parser.add_argument("--whole-repeats", type=int, default=3,
                        help="runs of the whole path per layout, the layouts taking turns "
                             "(default 3); the last line reports the run with the median "
                             "ratio and lists every run's ratio")
    parser.add_argument("--whole-layouts", choices=list(LAYOUTS), default="both",
                        help="the whole path with ingest and pipeline in one process, in "
                             "two, or both")
    parser.add_argument("--only", choices=["ingest", "stage", "whole", "latency", "checkpoint",
                                           "merge-cost"])
    parser.add_argument("--checkpoint-events", default="100000,1000000",
                        help="comma-separated log sizes whose checkpoint is timed")
    parser.add_argument("--profile", action="store_true",
                        help="sample each worker with py-spy and print its top costs")
    parser.add_argument("--timeline", action="store_true",
                        help="print, every 100 ms of each ingest and whole-path run, the shop "
                             "records read, those waiting in the event-time merge, the log "
                             "appends, the log records folded and the workers' CPU (it "
                             "scrapes their metrics every 100 ms throughout: a diagnostic)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of one deployment in each throughput run "
                             "(their rates add up; compare runs with 1 and 2)")
    parser.add_argument("--publish-after-ready", action="store_true",
                        help="publish ingest's and the whole path's events only once every "
                             "worker is ready (always with --workers 2 or more; give it with "
                             "--workers 1 to compare the two)")
    parser.add_argument("--partitions", type=int, default=3,
                        help="partitions of every topic (default 3)")
    parser.add_argument("--shops", type=int, default=3,
                        help="shops the events are spread over (the log is keyed by shop: "
                             "fewer shops than partitions leaves partitions idle)")
    parser.add_argument("--lateness-minutes", type=int, default=None,
                        help="the rules' event_time.allowed_lateness_minutes for every "
                             "pipeline run (default: the shipped rules', 0)")
    parser.add_argument("--no-merge", action="store_true",
                        help="ingest appends without waiting on the event-time merge "
                             "(REFSTREAM_MERGE_IDLE_S=0) in every run")
    parser.add_argument("--merge-cost", action="store_true",
                        help="also run the whole path with the merge and the watermark "
                             "(REFSTREAM_MERGE_IDLE_S as configured, --lateness-minutes or 15) "
                             "and without (0 and 0), and print both and the ratio (issue #18)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the broker's and workers' files and logs here")
    args = parser.parse_args(argv)
    if args.whole_repeats < 1:
        parser.error("--whole-repeats must be at least 1")
    wanted = {args.only} if args.only else {"ingest", "stage", "whole", "latency",
                                            "checkpoint"}
    if args.merge_cost:
        wanted.add("merge-cost")
    wholes: dict[bool, Repeated] = {}  # by layout: split or not
    p99s: dict[bool, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        setup = Setup(workers=args.workers, partitions=args.partitions,
                      publish_after_ready=args.publish_after_ready or args.workers > 1)
        if args.lateness_minutes is not None:
            setup = setup.with_env(REFSTREAM_RULES_PATH=str(
                rules_with_lateness(args.lateness_minutes, tmp)))
        if args.no_merge:
            setup = setup.with_env(REFSTREAM_MERGE_IDLE_S="0")
        print(f"setup: {setup.workers} worker process(es), {setup.partitions} partitions, "
              f"{args.shops} shops, events published "
              f"{'once every worker is ready' if setup.publish_after_ready else 'first'}, "
              f"environment {dict(setup.env) or 'as is'}; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if "checkpoint" in wanted:
            committed: dict[int, tuple[float, float]] = {}
            for count in (int(n) for n in args.checkpoint_events.split(",") if n):
                line, snapshot_s, acknowledge_s = checkpoint_costs(count, tmp)
                committed[count] = (snapshot_s, acknowledge_s)
                print(line)
            if len(committed) > 1:
                (small, (small_s, small_a)), *_, (large, (large_s, large_a)) = sorted(
                    committed.items())
                print(f"snapshot cost grows {large_s / small_s:.1f}x from {small:,} to "
                      f"{large:,} events (O(state)); the worker spaces snapshots by that cost "
                      "(REFSTREAM_CHECKPOINT_SNAPSHOT_SHARE), so their share of its time stays "
                      f"bounded; a checkpoint between snapshots (one offset row per "
                      f"partition, meant to be O(1)): {large_a / small_a:.1f}x")
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker = None
        if wanted - {"checkpoint"} and not bootstrap:
            port, controller = free_ports(2)
            broker = LocalKafka(port=port, controller_port=controller, data_dir=tmp / "kafka",
                                die_with_parent=True, heap="1g").start(timeout=240)
            bootstrap = broker.bootstrap
            setup = replace(setup, broker_pid=broker.pid())
        try:
            if wanted - {"checkpoint"}:
                assert bootstrap is not None
                print(f"broker {bootstrap}; preparing {args.events:,} events", file=sys.stderr)
                events = encoded_events(args.events, args.shops)
                warm_up, warmed = warm_up_broker(bootstrap, tmp, events, setup)
                print(warm_up, file=sys.stderr)
                runs: list[WorkerRun] = []
                if "ingest" in wanted:
                    runs.append(run_path(bootstrap, tmp, events, False, args.profile,
                                         setup=setup, warmed=warmed, timeline=args.timeline))
                if "stage" in wanted:
                    runs.append(run_stage(bootstrap, tmp, events, args.profile, setup=setup))
                if "whole" in wanted:
                    # Repeated, the layouts taking turns: one run's ratio moves with the
                    # machine's speed of the moment (0.39-0.80 on unchanged code, session 22);
                    # the summary reports the run with the median ratio, and every run is in
                    # the table.
                    repeats: dict[bool, list[WorkerRun]] = {}
                    for turn in range(args.whole_repeats):
                        for split in LAYOUTS[args.whole_layouts]:
                            name = path_label(True, split)
                            if args.whole_repeats > 1:
                                name += f" #{turn + 1}"
                            run = run_path(bootstrap, tmp, events, True,
                                           args.profile and turn == 0, setup=setup,
                                           warmed=warmed, label=name, split=split,
                                           timeline=args.timeline)
                            runs.append(run)
                            repeats.setdefault(split, []).append(run)
                    wholes = {split: Repeated(measured) for split, measured in repeats.items()}
                merge_cost: tuple[WorkerRun, WorkerRun] | None = None
                if "merge-cost" in wanted:
                    minutes = 15 if args.lateness_minutes is None else args.lateness_minutes
                    with_both = replace(setup, env=tuple(
                        (k, v) for k, v in setup.env if k != "REFSTREAM_MERGE_IDLE_S")
                    ).with_env(REFSTREAM_RULES_PATH=str(rules_with_lateness(minutes, tmp)))
                    without = setup.with_env(REFSTREAM_MERGE_IDLE_S="0",
                                             REFSTREAM_RULES_PATH=str(rules_with_lateness(0,
                                                                                          tmp)))
                    merge_cost = (
                        run_path(bootstrap, tmp, events, True, False, setup=with_both,
                                 warmed=warmed, label=f"merge+wm {minutes}m"),
                        run_path(bootstrap, tmp, events, True, False, setup=without,
                                 warmed=warmed, label="no merge, wm 0"))
                    runs += merge_cost
                if runs:
                    print(TABLE_NOTE)
                    print(f"{'path':17} {'events/s':>9} {'raw aiokafka/s':>15} {'ratio':>6} "
                          f"{'first out':>9} "
                          f"{'worker CPU µs/event':>20} {'of it snapshots':>16} "
                          f"{'raw CPU µs/event':>17}")
                for run in runs:
                    print(f"{run.label:17} {run.rate:9,.0f} {run.raw_rate:15,.0f} "
                          f"{run.ratio:6.2f} "
                          f"{run.first_out_s:8.2f}s "
                          f"{run.cpu.total / run.events * 1e6:20.1f} "
                          f"{run.cpu.children / run.events * 1e6:16.1f} "
                          f"{run.raw_cpu_per_event * 1e6:17.1f}")
                if runs:
                    print("raw aiokafka before / after each run: " + "; ".join(
                        f"{run.events / run.raw_before.seconds:,.0f} / "
                        f"{run.events / run.raw_after.seconds:,.0f}" for run in runs))
                    print(budget_line(runs))
                if merge_cost is not None:
                    merged, plain = merge_cost
                    print(f"cost of the merge and the watermark (whole path): "
                          f"{merged.rate:,.0f} events/s with them, {plain.rate:,.0f} without; "
                          f"ratio {merged.rate / plain.rate:.2f} (with/without; each against "
                          f"its raw copy: {merged.ratio:.2f} and "
                          f"{plain.ratio:.2f})")
                for run in runs:
                    print(run.spread())
                for run in runs:
                    print(run.checkpoints())
                    print(run.collections())
                for run in runs:
                    if run.timeline:
                        print(f"\ntimeline, {run.label} (from the workers ready):")
                        print("\n".join(run.timeline))
                for run in runs:
                    if run.profile:
                        print(f"\nprofile, {run.label} worker (GIL-holding samples):")
                        print("\n".join(run.profile))
                if "latency" in wanted:
                    count = int(args.rate * args.latency_seconds)
                    for split in LAYOUTS[args.latency_layouts]:
                        p50, p99, samples = run_latency(bootstrap, tmp, events[:count],
                                                        args.rate, split, setup=setup)
                        p99s[split] = p99
                        layout = ("ingest and pipeline in separate processes" if split
                                  else "one worker process")
                        print(f"\nlatency at {args.rate:,.0f} events/s for "
                              f"{args.latency_seconds:.0f}s, {layout} (append to refstream.log"
                              f" -> derived event sent, {samples:,} samples): "
                              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
        finally:
            if broker is not None:
                broker.stop()
    print(summary_line(wholes, p99s, args.rate))
    return 0


TABLE_NOTE = """
events/s: end to end, from the workers ready to the last record out; raw aiokafka's from its
start to its last record acknowledged. first out: when the workers' first records came out;
ingest holds each record in the event-time merge for up to REFSTREAM_MERGE_IDLE_S (1 s by
default), and that hold is inside the rate (see `WorkerRun`)."""


def budget_line(runs: list[WorkerRun]) -> str:
    """What 0.5 of raw allows a run of one worker process, which runs on one core: 1 / (0.5 x
    raw rate) of CPU per event, against the CPU it used. Raw aiokafka's copy is one hop
    (consume and produce) and used the CPU of the last column; the whole path in one process
    makes two hops (shop topics -> log -> derived topics)."""
    single = [run for run in runs if run.processes == 1]
    if not single:
        return "CPU per event at 0.5 of raw: no run of one process"
    return ("CPU per event at 0.5 of raw (one process, one core; its snapshot children run "
            "beside it): " + "; ".join(
                f"{run.label} {2e6 / run.raw_rate:.1f} µs allowed, "
                f"{run.cpu.own / run.events * 1e6:.1f} µs "
                "used" for run in single))


@dataclass(frozen=True)
class Repeated:
    """The runs of one layout of the whole path; `median` is the run whose ratio to its raw
    copy is the median (the lower middle one of an even count)."""

    runs: list[WorkerRun]

    @property
    def median(self) -> WorkerRun:
        ordered = sorted(self.runs, key=lambda run: run.ratio)
        return ordered[(len(ordered) - 1) // 2]

    def describe(self) -> str:
        run = self.median
        text = f"{run.rate:,.0f} events/s ({run.ratio:.2f} of raw aiokafka)"
        if len(self.runs) > 1:
            text += (f" [median of {len(self.runs)} runs: "
                     + ", ".join(f"{r.ratio:.2f}" for r in self.runs) + "]")
        return text


def summary_line(wholes: dict[bool, Repeated], p99s: dict[bool, float], rate: float) -> str:
    """`whole path: X events/s (R of raw aiokafka); p99 Y ms at 2000 events/s`, for one
    worker process (the small shop's layout) and, when measured, ingest and pipeline in
    processes of their own; with --whole-repeats above 1, X and R are the median run's and
    every run's ratio follows in brackets."""
    def layout(split: bool) -> str:
        repeated, p99 = wholes.get(split), p99s.get(split)
        throughput = repeated.describe() if repeated else "not measured"
        p99_text = f"{p99 * 1000:.0f} ms" if p99 is not None else "not measured"
        return f"{throughput}; p99 {p99_text} at {rate:.0f} events/s"

    line = f"whole path: {layout(False)}"
    if True in wholes or True in p99s:
        line += f"; ingest and pipeline as two processes: {layout(True)}"
    return line


if __name__ == "__main__":
    sys.exit(main())
