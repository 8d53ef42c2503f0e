"""The gateway under provider faults, in steps set by tests/local/s3_gateway.rs (OUTLAST_S3_STEP):
`fill` while all answer, `one-down` with one of three refusing (reads and writes go on),
`two-down` with two refusing (a prompt 503 for each request, never a hang), `healed`."""

import os
import time

from outlast_s3 import client, code_of

s3 = client(os.environ["OUTLAST_S3_KEY_ID"], os.environ["OUTLAST_S3_SECRET"], connect_timeout=5, read_timeout=60)
step = os.environ["OUTLAST_S3_STEP"]
before = bytes(range(256)) * 4096  # 1 MiB
during = b"written with a provider down" * 1000

if step == "fill":
    s3.create_bucket(Bucket="site")
    s3.put_object(Bucket="site", Key="before.bin", Body=before)
elif step == "one-down":
    assert s3.get_object(Bucket="site", Key="before.bin")["Body"].read() == before
    s3.put_object(Bucket="site", Key="during.bin", Body=during)
    assert s3.get_object(Bucket="site", Key="during.bin")["Body"].read() == during
elif step == "two-down":
    started = time.time()
    assert code_of(lambda: s3.get_object(Bucket="site", Key="before.bin")["Body"].read()) == "ServiceUnavailable"
    assert code_of(lambda: s3.put_object(Bucket="site", Key="lost.bin", Body=b"x")) == "ServiceUnavailable"
    assert time.time() - started < 30, "the answers were not prompt"
elif step == "healed":
    assert s3.get_object(Bucket="site", Key="before.bin")["Body"].read() == before
    assert s3.get_object(Bucket="site", Key="during.bin")["Body"].read() == during
    assert code_of(lambda: s3.get_object(Bucket="site", Key="lost.bin")) == "NoSuchKey"
else:
    raise SystemExit(f"unknown step {step}")
print(f"boto3 faults, {step}: ok")
