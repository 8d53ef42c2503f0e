"""The S3 gateway through boto3, as an application uses it: buckets, objects, listings,
ranges, conditions, digests, signatures and grants. Run by tests/local/s3_gateway.rs against a
running `outlast serve`; every check raises on failure."""

import hashlib
import base64
import os
import time
import urllib.error
import urllib.request

from outlast_s3 import ENDPOINT, code_of
from outlast_s3 import client as client_of

KEY_ID = os.environ["OUTLAST_S3_KEY_ID"]
SECRET = os.environ["OUTLAST_S3_SECRET"]
READ_KEY_ID = os.environ["OUTLAST_S3_READ_KEY_ID"]
READ_SECRET = os.environ["OUTLAST_S3_READ_SECRET"]


def client(key_id=KEY_ID, secret=SECRET):
    return client_of(key_id, secret)


s3 = client()

# Buckets.
s3.create_bucket(Bucket="photos")
assert code_of(lambda: s3.create_bucket(Bucket="photos")) == "BucketAlreadyOwnedByYou"
s3.head_bucket(Bucket="photos")
assert code_of(lambda: s3.head_bucket(Bucket="nothere")) in ("404", "NoSuchBucket")
assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos"]
assert code_of(lambda: s3.create_bucket(Bucket="Bad_Name")) == "InvalidBucketName"

# Objects: body, metadata, content type, MD5 ETag.
body = os.urandom(9 * 1024 * 1024 + 17)  # more than two segments
put = s3.put_object(Bucket="photos", Key="2026/cat.jpg", Body=body, ContentType="image/jpeg", Metadata={"owner": "ada"})
assert put["ETag"].strip('"') == hashlib.md5(body).hexdigest(), put["ETag"]
got = s3.get_object(Bucket="photos", Key="2026/cat.jpg")
assert got["Body"].read() == body
assert got["ContentType"] == "image/jpeg" and got["Metadata"] == {"owner": "ada"}, got
assert got["ContentLength"] == len(body) and got["ETag"] == put["ETag"]
head = s3.head_object(Bucket="photos", Key="2026/cat.jpg")
assert head["ContentLength"] == len(body) and head["Metadata"] == {"owner": "ada"}

# Ranges, including a suffix range; a range past the end is 416.
r = s3.get_object(Bucket="photos", Key="2026/cat.jpg", Range="bytes=10-19")
assert r["Body"].read() == body[10:20] and r["ContentRange"] == f"bytes 10-19/{len(body)}", r["ContentRange"]
assert s3.get_object(Bucket="photos", Key="2026/cat.jpg", Range="bytes=-5")["Body"].read() == body[-5:]
big = len(body) + 10
assert code_of(lambda: s3.get_object(Bucket="photos", Key="2026/cat.jpg", Range=f"bytes={big}-")) == "InvalidRange"

# Conditional reads.
etag = put["ETag"]
assert code_of(lambda: s3.get_object(Bucket="photos", Key="2026/cat.jpg", IfNoneMatch=etag)) == "304"
assert code_of(lambda: s3.get_object(Bucket="photos", Key="2026/cat.jpg", IfMatch='"0000"')) == "PreconditionFailed"
s3.get_object(Bucket="photos", Key="2026/cat.jpg", IfMatch=etag)["Body"].read()
future = time.time() + 3600
assert code_of(lambda: s3.get_object(Bucket="photos", Key="2026/cat.jpg", IfModifiedSince=future)) == "304"

# Conditional writes: put-if-absent loses against an existing key and changes nothing.
assert code_of(lambda: s3.put_object(Bucket="photos", Key="2026/cat.jpg", Body=b"x", IfNoneMatch="*")) == "PreconditionFailed"
s3.put_object(Bucket="photos", Key="new.txt", Body=b"first", IfNoneMatch="*")
assert code_of(lambda: s3.put_object(Bucket="photos", Key="new.txt", Body=b"x", IfMatch='"0000"')) == "PreconditionFailed"
first_etag = s3.head_object(Bucket="photos", Key="new.txt")["ETag"]
s3.put_object(Bucket="photos", Key="new.txt", Body=b"second", IfMatch=first_etag)
assert s3.get_object(Bucket="photos", Key="new.txt")["Body"].read() == b"second"
assert s3.get_object(Bucket="photos", Key="2026/cat.jpg")["Body"].read() == body

# A wrong Content-MD5 is refused and the old object stays.
bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
assert code_of(lambda: s3.put_object(Bucket="photos", Key="new.txt", Body=b"third", ContentMD5=bad_md5)) == "BadDigest"
assert s3.get_object(Bucket="photos", Key="new.txt")["Body"].read() == b"second"
assert code_of(lambda: s3.put_object(Bucket="photos", Key="new.txt", Body=b"third", ContentMD5="not an md5")) == "InvalidDigest"
# A declared Content-MD5 is the ETag, once the whole body (segments past the first) matched
# it; a wrong one found only at the end of such a body leaves the old object as it was.
long_body = os.urandom(6 * 1024 * 1024 + 5)
long_md5 = base64.b64encode(hashlib.md5(long_body).digest()).decode()
put = s3.put_object(Bucket="photos", Key="long.bin", Body=long_body, ContentMD5=long_md5)
assert put["ETag"].strip('"') == hashlib.md5(long_body).hexdigest(), put["ETag"]
assert s3.get_object(Bucket="photos", Key="long.bin")["Body"].read() == long_body
other = bytes([long_body[0] ^ 1]) + long_body[1:]
assert code_of(lambda: s3.put_object(Bucket="photos", Key="long.bin", Body=other, ContentMD5=long_md5)) == "BadDigest"
got = s3.get_object(Bucket="photos", Key="long.bin")
assert got["Body"].read() == long_body and got["ETag"] == put["ETag"]
s3.delete_object(Bucket="photos", Key="long.bin")

# Missing things.
assert code_of(lambda: s3.get_object(Bucket="photos", Key="nope")) == "NoSuchKey"
assert code_of(lambda: s3.get_object(Bucket="nothere", Key="x")) == "NoSuchBucket"
assert code_of(lambda: s3.put_object(Bucket="photos", Key="k" * 1025, Body=b"x")) in ("KeyTooLongError", "InvalidURI")

# Listings: prefix, delimiter, pages.
for k in ["a/1", "a/2", "a/b/3", "b/4", "c"]:
    s3.put_object(Bucket="photos", Key=k, Body=k.encode())
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="photos", Prefix="a/")["Contents"]]
assert keys == ["a/1", "a/2", "a/b/3"], keys
top = s3.list_objects_v2(Bucket="photos", Delimiter="/")
assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["2026/", "a/", "b/"], top["CommonPrefixes"]
assert [o["Key"] for o in top["Contents"]] == ["c", "new.txt"], top["Contents"]
pages = s3.get_paginator("list_objects_v2").paginate(Bucket="photos", PaginationConfig={"PageSize": 2})
listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
assert listed == ["2026/cat.jpg", "a/1", "a/2", "a/b/3", "b/4", "c", "new.txt"], listed
v1 = [o["Key"] for p in s3.get_paginator("list_objects").paginate(Bucket="photos", PaginationConfig={"PageSize": 3}) for o in p.get("Contents", [])]
assert v1 == listed, v1
after = [o["Key"] for o in s3.list_objects_v2(Bucket="photos", StartAfter="a/b/3")["Contents"]]
assert after == ["b/4", "c", "new.txt"], after

# Copy, with metadata kept or replaced.
s3.copy_object(Bucket="photos", Key="copy.jpg", CopySource={"Bucket": "photos", "Key": "2026/cat.jpg"})
c = s3.get_object(Bucket="photos", Key="copy.jpg")
assert c["Body"].read() == body and c["Metadata"] == {"owner": "ada"} and c["ContentType"] == "image/jpeg"
s3.copy_object(Bucket="photos", Key="copy2.jpg", CopySource="photos/c", MetadataDirective="REPLACE", Metadata={"k": "v"}, ContentType="text/plain")
c2 = s3.head_object(Bucket="photos", Key="copy2.jpg")
assert c2["Metadata"] == {"k": "v"} and c2["ContentType"] == "text/plain"

# Deletes: one, many, and a bucket only when empty.
s3.delete_object(Bucket="photos", Key="c")
s3.delete_object(Bucket="photos", Key="c")  # again: still fine
assert code_of(lambda: s3.get_object(Bucket="photos", Key="c")) == "NoSuchKey"
out = s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "a/1"}, {"Key": "a/2"}, {"Key": "gone"}]})
assert sorted(d["Key"] for d in out["Deleted"]) == ["a/1", "a/2", "gone"], out
assert code_of(lambda: s3.delete_bucket(Bucket="photos")) == "BucketNotEmpty"
s3.create_bucket(Bucket="empty")
s3.delete_bucket(Bucket="empty")
assert code_of(lambda: s3.head_bucket(Bucket="empty")) in ("404", "NoSuchBucket")

# A client that goes away mid-upload: nothing becomes visible, and the old version stays.
import http.client
import socket
import urllib.parse

put_url = urllib.parse.urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": "photos", "Key": "new.txt"}, ExpiresIn=60))
conn = http.client.HTTPConnection(put_url.hostname, put_url.port)
conn.putrequest("PUT", f"{put_url.path}?{put_url.query}")
conn.putheader("Content-Length", str(4 * 1024 * 1024))
conn.endheaders()
conn.send(b"half a body" * 1000)
conn.sock.shutdown(socket.SHUT_RDWR)
conn.close()
time.sleep(1)
assert s3.get_object(Bucket="photos", Key="new.txt")["Body"].read() == b"second"

# Two PUTs of one key at the same time, the older (begun first) ending last: S3 answers both
# with success, and the newer one's body is what is read after.
older_body, newer_body = os.urandom(300_000), os.urandom(1000)
race_url = urllib.parse.urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": "photos", "Key": "race"}, ExpiresIn=60))


def begin_put(body, headers=()):
    """A presigned PUT of `race` that has sent its headers and the start of `body`, and has
    begun on the server (its version is stamped as it starts)."""
    conn = http.client.HTTPConnection(race_url.hostname, race_url.port)
    conn.putrequest("PUT", f"{race_url.path}?{race_url.query}")
    conn.putheader("Content-Length", str(len(body)))
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(body[:1000])
    time.sleep(0.5)
    return conn


older = begin_put(older_body)
newer = s3.put_object(Bucket="photos", Key="race", Body=newer_body)
older.send(older_body[1000:])
answer = older.getresponse()
assert answer.status == 200, (answer.status, answer.read())
assert answer.getheader("ETag").strip('"') == hashlib.md5(older_body).hexdigest()
older.close()
assert newer["ETag"].strip('"') == hashlib.md5(newer_body).hexdigest()
assert s3.get_object(Bucket="photos", Key="race")["Body"].read() == newer_body
# A conditional PUT that loses such a race is refused, as AWS refuses one (409), not told it
# took effect: its condition was judged against neither version.
older = begin_put(older_body, [("If-Match", newer["ETag"])])
s3.put_object(Bucket="photos", Key="race", Body=b"newest")
older.send(older_body[1000:])
answer = older.getresponse()
assert answer.status == 409, (answer.status, answer.read())
older.close()
assert s3.get_object(Bucket="photos", Key="race")["Body"].read() == b"newest"
s3.delete_object(Bucket="photos", Key="race")

# Signatures and keys.
assert code_of(lambda: client(secret="x" * 40).list_buckets()) == "SignatureDoesNotMatch"
assert code_of(lambda: client(key_id="OLNOSUCHKEY000000000").list_buckets()) == "InvalidAccessKeyId"
url = s3.generate_presigned_url("get_object", Params={"Bucket": "photos", "Key": "new.txt"}, ExpiresIn=60)
assert urllib.request.urlopen(url).read() == b"second"
expired = s3.generate_presigned_url("get_object", Params={"Bucket": "photos", "Key": "new.txt"}, ExpiresIn=1)
time.sleep(2)
try:
    urllib.request.urlopen(expired)
    raise AssertionError("an expired URL was served")
except urllib.error.HTTPError as e:
    assert e.code == 403 and b"AccessDenied" in e.read()
try:
    urllib.request.urlopen(f"{ENDPOINT}/photos/new.txt")
    raise AssertionError("an anonymous read of a private bucket was served")
except urllib.error.HTTPError as e:
    assert e.code == 403

# A read-only key reads and lists, and may not write or delete.
ro = client(READ_KEY_ID, READ_SECRET)
assert ro.get_object(Bucket="photos", Key="new.txt")["Body"].read() == b"second"
assert [b["Name"] for b in ro.list_buckets()["Buckets"]] == ["photos"]
assert code_of(lambda: ro.put_object(Bucket="photos", Key="x", Body=b"x")) == "AccessDenied"
assert code_of(lambda: ro.delete_object(Bucket="photos", Key="new.txt")) == "AccessDenied"
assert code_of(lambda: ro.create_bucket(Bucket="mine")) == "AccessDenied"

print("boto3 basics: ok")
