"""The S3 gateway over HTTPS, as AWS's SDKs use S3 by default: boto3 then sends bodies
unsigned, in aws-chunked encoding with a CRC32 checksum in a trailer after the body, and the
gateway must check that trailer. Run by tests/local/s3_gateway.rs against `outlast serve
--tls-cert ...`; every check raises on failure."""

import base64
import hashlib
import http.client
import os
import ssl
import struct
import tempfile
import urllib.parse
import zlib

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from boto3.s3.transfer import TransferConfig

from outlast_s3 import CA, ENDPOINT, client, code_of

KEY_ID = os.environ["OUTLAST_S3_KEY_ID"]
SECRET = os.environ["OUTLAST_S3_SECRET"]
assert ENDPOINT.startswith("https://"), ENDPOINT

s3 = client(KEY_ID, SECRET)
# What each request said of its payload, to show the unsigned trailer form was used.
sent = []
s3.meta.events.register("before-send.s3.*", lambda request, **_: sent.append(dict(request.headers)))

s3.create_bucket(Bucket="tls")
body = os.urandom(3 * 1024 * 1024 + 5)
sent.clear()
put = s3.put_object(Bucket="tls", Key="one", Body=body)
assert sent[-1]["X-Amz-Content-SHA256"] == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER", sent[-1]
assert put["ETag"].strip('"') == hashlib.md5(body).hexdigest(), put
assert s3.get_object(Bucket="tls", Key="one")["Body"].read() == body
got = s3.get_object(Bucket="tls", Key="one", Range="bytes=1000-1999")["Body"].read()
assert got == body[1000:2000]

# Multipart through the transfer manager: parts go the same way.
big = os.urandom(13 * 1024 * 1024)
cfg = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
with tempfile.NamedTemporaryFile() as f:
    f.write(big)
    f.flush()
    s3.upload_file(f.name, "tls", "big", Config=cfg)
head = s3.head_object(Bucket="tls", Key="big")
assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
assert head["ContentLength"] == len(big)
assert s3.get_object(Bucket="tls", Key="big")["Body"].read() == big

# A trailer that does not match the body: refused with BadDigest, nothing stored. Sent by hand
# (botocore computes its trailers right), signed as botocore signs an unsigned payload.
def chunked(data, crc):
    trailer = b"x-amz-checksum-crc32:" + base64.b64encode(struct.pack(">I", crc)) + b"\r\n"
    return b"%x\r\n" % len(data) + data + b"\r\n0\r\n" + trailer + b"\r\n"


def put_raw(key, data, crc):
    url = f"{ENDPOINT}/tls/{key}"
    headers = {
        "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
        "X-Amz-Trailer": "x-amz-checksum-crc32",
    }
    encoded = chunked(data, crc)
    request = AWSRequest(method="PUT", url=url, headers=headers, data=encoded)
    # What botocore marks a trailer-checksummed request with: its payload is then signed as
    # STREAMING-UNSIGNED-PAYLOAD-TRAILER rather than hashed.
    request.context["checksum"] = {"request_algorithm": {"in": "trailer"}}
    S3SigV4Auth(Credentials(KEY_ID, SECRET), "s3", "us-east-1").add_auth(request)
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ssl.create_default_context(cafile=CA))
    assert request.headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER", request.headers
    conn.request("PUT", parts.path, body=encoded, headers=dict(request.headers))
    answer = conn.getresponse()
    out = (answer.status, answer.read())
    conn.close()
    return out


data = b"trailed bytes " * 1000
status, text = put_raw("trailed", data, zlib.crc32(data))
assert status == 200, (status, text)
assert s3.get_object(Bucket="tls", Key="trailed")["Body"].read() == data
status, text = put_raw("bad-trailer", data, zlib.crc32(data) ^ 1)
assert status == 400 and b"BadDigest" in text, (status, text)
assert code_of(lambda: s3.head_object(Bucket="tls", Key="bad-trailer")) in ("404", "NoSuchKey")

# Plain HTTP is not spoken on the HTTPS port.
plain = urllib.parse.urlsplit(ENDPOINT)
conn = http.client.HTTPConnection(plain.hostname, plain.port, timeout=10)
try:
    conn.request("GET", "/")
    answer = conn.getresponse()
    raise AssertionError(f"plain HTTP answered {answer.status}")
except (http.client.HTTPException, ConnectionError, OSError):
    pass
print("ok")
