"""S3 load for scripts/bench-gateway.sh: the same client against any S3 endpoint.

    bench_gateway.py ENDPOINT KEY_ID SECRET ops      SIZE COUNT CLIENTS   # PUT then GET, ops/s and MiB/s
    bench_gateway.py ENDPOINT KEY_ID SECRET uploads  FILE CLIENTS         # CLIENTS multipart uploads of FILE at once
    bench_gateway.py ENDPOINT KEY_ID SECRET transfer FILE COUNT           # upload_file / download_file, COUNT times
    bench_gateway.py ENDPOINT KEY_ID SECRET mixed    SECONDS              # GETs of 4 KiB while 4 MiB PUTs run
    bench_gateway.py ENDPOINT KEY_ID SECRET presign  SIZE COUNT OUT       # OUT: presigned GET URLs, one a line
    bench_gateway.py ENDPOINT KEY_ID SECRET put      FILE KEY             # one put_object of FILE (read first)
    bench_gateway.py ENDPOINT KEY_ID SECRET put-url  KEY                  # a presigned PUT URL of KEY

An https ENDPOINT is trusted through the certificate in $OUTLAST_BENCH_CA; over it boto3 sends
bodies unsigned with a trailing checksum (its default), over http it signs them (SHA-256).

Clients are processes (boto3 holds the GIL), each with its own connection. Prints one JSON
line per measurement."""

import json
import multiprocessing as mp
import os
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

ENDPOINT, KEY, SECRET, WHAT = sys.argv[1:5]
ARGS = sys.argv[5:]
BUCKET = "bench"


def client():
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        verify=os.environ.get("OUTLAST_BENCH_CA"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, max_pool_connections=4),
    )


def puts(job):
    worker, size, count = job
    s3 = client()
    body = os.urandom(size)
    for i in range(count):
        s3.put_object(Bucket=BUCKET, Key="o/%d-%d-%d" % (size, worker, i), Body=body)


def gets(job):
    worker, size, count = job
    s3 = client()
    for i in range(count):
        got = s3.get_object(Bucket=BUCKET, Key="o/%d-%d-%d" % (size, worker, i))["Body"].read()
        assert len(got) == size


def timed(fn, jobs):
    started = time.perf_counter()
    with mp.Pool(len(jobs)) as pool:
        pool.map(fn, jobs)
    return time.perf_counter() - started


def ops(size, count, clients):
    jobs = [(w, size, count // clients) for w in range(clients)]
    done = (count // clients) * clients
    for name, fn in (("put", puts), ("get", gets)):
        secs = timed(fn, jobs)
        print(json.dumps({
            "op": name, "size": size, "clients": clients, "count": done, "secs": round(secs, 3),
            "ops_per_s": round(done / secs, 1), "mib_per_s": round(done * size / secs / 2**20, 1),
        }))


def upload(job):
    worker, path = job
    cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=16 << 20, max_concurrency=1)
    client().upload_file(path, BUCKET, "big/%d" % worker, Config=cfg)


def uploads(path, clients):
    secs = timed(upload, [(w, path) for w in range(clients)])
    size = os.path.getsize(path)
    print(json.dumps({"op": "multipart-uploads", "clients": clients, "size": size, "secs": round(secs, 3),
                      "mib_per_s": round(clients * size / secs / 2**20, 1)}))


def transfers(path, count):
    """The way clients move large files: boto3's transfer manager with its defaults (parts of
    8 MiB, 10 at once, both ways), one file at a time."""
    s3 = client()
    size = os.path.getsize(path)
    for name in ("upload", "download"):
        started = time.perf_counter()
        for i in range(count):
            if name == "upload":
                s3.upload_file(path, BUCKET, "file/%d" % i)
            else:
                s3.download_file(BUCKET, "file/%d" % i, path + ".back")
        secs = time.perf_counter() - started
        print(json.dumps({"op": "transfer-" + name, "size": size, "count": count, "secs": round(secs, 3),
                          "mib_per_s": round(count * size / secs / 2**20, 1)}))
    os.remove(path + ".back")


def small_gets(job):
    seconds, = job
    s3 = client()
    lat = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        s3.get_object(Bucket=BUCKET, Key="o/4096-0-0")["Body"].read()
        lat.append(time.perf_counter() - t)
    return lat


def big_puts(job):
    seconds, = job
    s3 = client()
    body = os.urandom(4 << 20)
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        s3.put_object(Bucket=BUCKET, Key="load/%d" % n, Body=body)
        n += 1
    return n


def mixed(seconds):
    """GET latency of a small object alone, then with two clients putting 4 MiB objects."""
    for label, writers in (("alone", 0), ("under-put-load", 2)):
        with mp.Pool(2 + writers) as pool:
            w = [pool.apply_async(big_puts, ((seconds,),)) for _ in range(writers)]
            r = [pool.apply_async(small_gets, ((seconds,),)) for _ in range(2)]
            lat = sorted(x for res in r for x in res.get())
            written = sum(x.get() for x in w)
        p = lambda q: round(lat[int(q * (len(lat) - 1))] * 1000, 2)
        print(json.dumps({"op": "get-4k", "while": label, "gets": len(lat), "p50_ms": p(0.5), "p99_ms": p(0.99),
                          "puts_4mib": written}))


def put_once(path, key):
    """One put_object of a file already read, as the CLI's put of it is timed."""
    with open(path, "rb") as f:
        body = f.read()
    started = time.perf_counter()
    client().put_object(Bucket=BUCKET, Key=key, Body=body)
    secs = time.perf_counter() - started
    print(json.dumps({"op": "put-once", "size": len(body), "secs": round(secs, 3),
                      "mib_per_s": round(len(body) / secs / 2**20, 1)}))


if __name__ == "__main__":
    s3 = client()
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.ClientError:
        pass
    if WHAT == "ops":
        ops(int(ARGS[0]), int(ARGS[1]), int(ARGS[2]))
    elif WHAT == "uploads":
        uploads(ARGS[0], int(ARGS[1]))
    elif WHAT == "transfer":
        transfers(ARGS[0], int(ARGS[1]))
    elif WHAT == "mixed":
        mixed(float(ARGS[0]))
    elif WHAT == "put":
        put_once(ARGS[0], ARGS[1])
    elif WHAT == "put-url":
        print(s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": ARGS[0]}, ExpiresIn=3600))
    elif WHAT == "presign":
        # URLs of objects the 32-client ops run wrote, for a load tool that cannot sign; the
        # server still checks each signature.
        size, count = int(ARGS[0]), int(ARGS[1])
        with open(ARGS[2], "w") as out:
            for i in range(count):
                key = "o/%d-%d-%d" % (size, i % 32, i // 32)
                out.write(s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600))
                out.write("\n")
