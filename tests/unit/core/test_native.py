"""The compiled core (mypyc, tools/native.py) and the Python sources give the same bytes.

Two fresh interpreters fold one synthetic log: one with the compiled core, one forced to
the sources (REFSTREAM_PURE_PYTHON=1). Their derived events, encoded with the log codec,
must be identical, and each must have run the implementation it claims.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from refstream.tools import native

FOLD = """
import hashlib, json
from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.tools import native
from refstream.schemas.codec import Codec
from refstream.schemas.privacy import Pseudonymiser
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events

codec, digest, count = Codec(), hashlib.sha256(), 0
pipeline = Pipeline(load_rules(default_rules_path()))
pseudonymiser = Pseudonymiser(b"native-equivalence-test-secret-00")
for shop_event in iter_shop_events(SyntheticConfig(shops=2, customers_per_shop=400, days=25)):
    for derived in pipeline.apply(pseudonymiser.to_log_event(shop_event)):
        digest.update(codec.encode(derived))
        count += 1
print(json.dumps({"native": native.active(), "derived": count, "sha256": digest.hexdigest()}))
"""


def fold(pure: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure:
        env[native.PURE_ENV] = "1"
    done = subprocess.run([sys.executable, "-c", FOLD], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not native.current(), reason="no current compiled core (`make native`)")
def test_compiled_and_python_cores_derive_the_same_bytes() -> None:
    compiled, pure = fold(pure=False), fold(pure=True)
    assert compiled["native"] is True and pure["native"] is False
    assert isinstance(compiled["derived"], int) and compiled["derived"] > 100
    assert compiled == {**pure, "native": True}
