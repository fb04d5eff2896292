#!/usr/bin/env bash
# Local single-node Kafka (KRaft, no Docker) for development and tests.
# Deliberately thin: every step is implemented once, in deploy/kafka_launcher.py.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

usage() {
    cat <<EOF
usage: deploy/kafka.sh {fetch|start|stop|status} [options]
       deploy/kafka.sh COMMAND --help      (options of one command)

Runs a real Apache Kafka 3.9.1 broker+controller (KRaft) on 127.0.0.1 as a plain JVM.

  fetch   download the broker jars with Maven (once; skipped when present)
  start   fetch if needed, format storage on first use, start in the background,
          return once the broker answers requests
  start --secure
          the same broker locked down: a local CA and certificates (openssl), mutual
          TLS on KAFKA_PORT, SCRAM-SHA-512 over TLS on KAFKA_SASL_PORT, the controller
          on mutual TLS, an ACL authorizer that denies what no ACL allows. SCRAM users
          admin (super user), shop-producer, pipeline, finance, replay; passwords in
          DATA_DIR/security/credentials.json, one sourceable env file per user and
          protocol in DATA_DIR/security/clients/. Then, as admin:
            refstream topics create && refstream acls apply --local-broker DATA_DIR
          (docs/security.md). status and stop detect the mode by themselves.
  stop    SIGTERM via the pid file, SIGKILL if it does not exit in time
  status  exit 0 running and answering, 1 process up but not answering, 3 stopped

environment (each also has a --option):
  KAFKA_PORT             client port: PLAINTEXT, or mutual TLS with --secure (default 9092)
  KAFKA_SASL_PORT        SASL_SSL port with --secure (default 9094)
  KAFKA_CONTROLLER_PORT  KRaft controller port       (default 9093)
  REFSTREAM_KAFKA_DIR    config, pid, log and data   (default $root/.kafka)
  REFSTREAM_KAFKA_JARS   broker jars                 (default ~/.cache/refstream/kafka-3.9.1/libs)
  REFSTREAM_KAFKA_HEAP   JVM max heap                (default 512m)

Requires the project venv (make install), Java 17 (java on PATH or JAVA_HOME), for fetch
Maven 3, for --secure openssl.
EOF
}

case "${1:-}" in
    -h | --help | help)
        usage
        exit 0
        ;;
    fetch | start | stop | status) ;;
    "")
        usage >&2
        exit 2
        ;;
    *)
        echo "deploy/kafka.sh: unknown command '$1'" >&2
        usage >&2
        exit 2
        ;;
esac

# Anchor the default data dir at the repo root (it is git-ignored there) so the
# script behaves the same from any working directory.
export REFSTREAM_KAFKA_DIR="${REFSTREAM_KAFKA_DIR:-$root/.kafka}"

if [[ ! -x "$root/.venv/bin/python" ]]; then
    # The launcher needs the project's packages (kafka-python answers readiness, psutil
    # checks processes, Click parses options): they live in the venv.
    echo "deploy/kafka.sh: no $root/.venv yet; run 'make install' first" >&2
    exit 4
fi
exec "$root/.venv/bin/python" -m refstream.deploy.kafka_launcher "$@"
