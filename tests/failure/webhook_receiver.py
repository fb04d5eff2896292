"""A shop's webhook endpoint for the delivery tests, run as its own process.

`python webhook_receiver.py PORT SECRET FOLDER`: verifies every request's signature as
docs/serve.md tells receivers to, appends what it saw to FOLDER/received.jsonl, and answers
503 while FOLDER/failing exists. While FOLDER/stall exists, the first request after it
appeared is held (FOLDER/stalled is written) so the test can kill the sender mid-delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    port, secret, folder = int(sys.argv[1]), sys.argv[2].encode(), Path(sys.argv[3])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            timestamp = self.headers["Refstream-Timestamp"]
            expected = "v1=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
            valid = hmac.compare_digest(expected, self.headers["Refstream-Signature"])
            fresh = abs(time.time() - int(timestamp)) <= 300
            failing = (folder / "failing").exists()
            stall = (folder / "stall").exists() and not (folder / "stalled").exists()
            status = 503 if failing else (200 if valid and fresh else 401)
            record = {"key": self.headers["Idempotency-Key"],
                      "type": self.headers["Refstream-Event-Type"], "body": body.decode(),
                      "valid": valid, "fresh": fresh, "status": status, "stalled": stall}
            with (folder / "received.jsonl").open("a") as out:
                out.write(json.dumps(record) + "\n")
            if stall:
                (folder / "stalled").write_text(record["key"])
                time.sleep(30)  # the sender is killed while it waits for this answer
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
