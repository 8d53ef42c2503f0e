"""S3 and website load on the gateway while the test kills and restarts provider servers.

Writes objects, reads back earlier ones and compares them byte for byte, and fetches a site
page, until the file named by $OUTLAST_LOAD_STOP appears; then reads every object whose PUT
succeeded once more. Any wrong byte, or a call that takes longer than its timeout (a hang),
fails the run at once; errors the gateway answers (503 while too few providers answer) are
counted. Prints one JSON line of counts."""

import hashlib
import json
import os
import random
import time
import urllib.error
import urllib.request

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from outlast_s3 import client

TIMEOUT = 60
s3 = client(
    os.environ["OUTLAST_S3_KEY_ID"],
    os.environ["OUTLAST_S3_SECRET"],
    connect_timeout=10,
    read_timeout=TIMEOUT,
)
SITE = os.environ["OUTLAST_SITE"]
PAGE = os.environ["OUTLAST_SITE_PAGE"].encode()
STOP = os.environ["OUTLAST_LOAD_STOP"]
rng = random.Random(7)
stored = {}  # key -> md5 of what the last successful PUT sent
counts = {"puts": 0, "put_errors": 0, "gets": 0, "get_errors": 0, "pages": 0, "page_errors": 0, "last_puts": []}


def timed(what, call):
    started = time.monotonic()
    try:
        return call()
    finally:
        took = time.monotonic() - started
        assert took < TIMEOUT + 5, "%s took %.1f s: a hang" % (what, took)


def answered_error(e):
    """An error the gateway answered with (not a wrong byte): counted, not fatal."""
    if isinstance(e, ClientError):
        return e.response["Error"]["Code"] in ("ServiceUnavailable", "SlowDown", "InternalError", "OperationAborted")
    return isinstance(e, BotoCoreError)


s3.create_bucket(Bucket="load")
i = 0
while not os.path.exists(STOP):
    i += 1
    key = "obj-%05d" % i
    body = rng.randbytes(rng.choice([1000, 70_000, 300_000, 1_200_000]))
    try:
        timed("put", lambda: s3.put_object(Bucket="load", Key=key, Body=body))
        stored[key] = hashlib.md5(body).hexdigest()
        counts["puts"] += 1
        counts["last_puts"] = (counts["last_puts"] + [True])[-5:]
    except Exception as e:  # noqa: BLE001 - sorted below
        if not answered_error(e):
            raise
        counts["put_errors"] += 1
        counts["last_puts"] = (counts["last_puts"] + [False])[-5:]
    if stored:
        old = rng.choice(sorted(stored))
        try:
            got = timed("get", lambda: s3.get_object(Bucket="load", Key=old)["Body"].read())
            assert hashlib.md5(got).hexdigest() == stored[old], "wrong bytes for " + old
            counts["gets"] += 1
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001
            if not answered_error(e):
                raise
            counts["get_errors"] += 1
    try:
        with timed("page", lambda: urllib.request.urlopen(SITE + "/", timeout=TIMEOUT)) as r:
            assert r.read() == PAGE, "wrong page"
        counts["pages"] += 1
    except urllib.error.HTTPError as e:
        assert e.code == 503, "page: %d" % e.code
        counts["page_errors"] += 1

# With every server back: everything stored reads back whole.
for key, md5 in sorted(stored.items()):
    got = timed("final get", lambda: s3.get_object(Bucket="load", Key=key)["Body"].read())
    assert hashlib.md5(got).hexdigest() == md5, "wrong bytes for %s after the faults" % key
counts["verified"] = len(stored)
print(json.dumps(counts))
