"""docs/producers.md stays true: its examples are the files the tests run, and its
required-fields table is the schemas'."""

from __future__ import annotations

import re
from pathlib import Path

from refstream.schemas.codec import Codec

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "producers.md").read_text()


def test_every_example_is_the_file_the_tests_run() -> None:
    blocks = re.findall(r"<!-- example: (\S+) -->\n```\w+\n(.*?)```", GUIDE, flags=re.S)
    assert {path for path, _ in blocks} == {
        "tests/conformance/java/src/main/java/io/refstream/conformance/PublishShopEvent.java",
        "tests/conformance/java/src/main/java/io/refstream/conformance/ReadRewardDue.java",
        "tests/conformance/examples/publish_with_registry.py",
        "tests/conformance/examples/publish_single_object.py",
    }
    for path, code in blocks:
        assert code == (ROOT / path).read_text(), f"docs/producers.md differs from {path}"


def test_required_fields_table_matches_the_newest_shop_schemas() -> None:
    codec = Codec()
    rows = re.findall(r"^\| `(shop_\w+\.v\d+\.avsc)` \| ([^|]*)\| ([^|]*)\|$", GUIDE, flags=re.M)
    documented = {file: ([f.strip() for f in req.split(",") if f.strip()],
                         [f.strip() for f in opt.split(",") if f.strip()])
                  for file, req, opt in rows}
    expected = {}
    for name in {v.full_name for v in codec.versions if v.full_name.startswith("refstream.shop.")}:
        newest = codec.newest(name)
        fields = newest.declared["fields"]
        optional = [f["name"] for f in fields
                    if isinstance(f["type"], list) and "null" in f["type"]]
        required = [f["name"] for f in fields if f["name"] not in optional]
        expected[newest.file_name] = (required, optional)
    assert documented == expected
