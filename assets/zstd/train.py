#!/usr/bin/env python3
"""Trains the zstd dictionary event payloads are packed with (`src/db/payload.rs`).

    python3 assets/zstd/train.py            # writes assets/zstd/stripe-events-1.dict

Its samples are Stripe's OpenAPI object fixtures (tests/fixtures/stripe/fixtures3.json), each
wrapped in an event envelope as a webhook carries it and written as Stripe writes JSON (two-space
indent), once in the fixture's key order and once sorted. The event fixtures the tests and the
benchmark post are not among them, so what they measure is how the dictionary does on payloads it
has not seen.

A dictionary is part of the stored format: every payload packed with it names its id, and
reading one needs the same bytes. So this file is frozen once released. A better one gets the
next id (and a new file), and `payload::unpack` keeps every earlier one.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "tests", "fixtures", "stripe", "fixtures3.json")
# 0x4D4D4301: "MMC" and the dictionary's number; zstd reserves ids below 32768 and from 2^31.
DICTIONARY_ID = 0x4D4D4301
SIZE = 16384


def main():
    out = os.path.join(HERE, "stripe-events-1.dict")
    resources = json.load(open(FIXTURES))["resources"]
    with tempfile.TemporaryDirectory() as samples:
        for n, (name, obj) in enumerate(resources.items()):
            event = {
                "id": "evt_1PgcA0B7WZ01zgkW%06d" % n,
                "object": "event",
                "api_version": "2026-07-29.dahlia",
                "created": 1785578402 + n,
                "data": {"object": obj},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": name + ".updated",
            }
            for sort in (False, True):
                with open(os.path.join(samples, "%03d-%d.json" % (n, sort)), "w") as f:
                    json.dump(event, f, indent=2, sort_keys=sort)
        names = sorted(os.path.join(samples, f) for f in os.listdir(samples))
        subprocess.run(
            ["zstd", "-q", "-f", "--train", *names, "-o", out,
             "--maxdict=%d" % SIZE, "--dictID=%d" % DICTIONARY_ID],
            check=True,
        )
    print(out)


if __name__ == "__main__":
    sys.exit(main())
