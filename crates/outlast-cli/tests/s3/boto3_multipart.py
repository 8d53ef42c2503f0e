"""Multipart uploads through boto3: parts out of order, in parallel and sent twice, listing
parts and uploads, completing with the S3 ETag, ranged reads across part boundaries, part
copies, the errors S3 gives for bad completes, aborts, and put-if-absent on complete.

OUTLAST_S3_STEP "upload" does all that and leaves behind: `big/kept.bin` (a completed object,
whose parts must stay), `big/overwritten.bin` (completed, then overwritten by a plain put, so
its parts are garbage) and one abandoned upload of `big/abandoned.bin`. Step "after-sweep"
reads `big/kept.bin` back whole once the gateway has swept."""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from outlast_s3 import client, code_of

s3 = client(os.environ["OUTLAST_S3_KEY_ID"], os.environ["OUTLAST_S3_SECRET"])
MIB = 1 << 20


def body(n, seed):
    return bytes((i * 31 + seed) % 251 for i in range(n))


PART1, PART2, PART3 = body(5 * MIB, 1), body(5 * MIB + 7, 2), body(1000, 3)
WHOLE = PART1 + PART2 + PART3


def s3_etag(parts):
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return '"%s-%d"' % (hashlib.md5(digests).hexdigest(), len(parts))


def upload_parts(key, up, parts):
    """Sends the parts in parallel, the last first; returns [(number, etag)] in order."""

    def send(numbered):
        n, data = numbered
        r = s3.upload_part(Bucket="big", Key=key, UploadId=up, PartNumber=n, Body=data)
        return n, r["ETag"]

    with ThreadPoolExecutor(3) as pool:
        sent = list(pool.map(send, reversed(list(enumerate(parts, 1)))))
    return sorted(sent)


def complete(key, up, etags, **kw):
    parts = [{"PartNumber": n, "ETag": e} for n, e in etags]
    return s3.complete_multipart_upload(Bucket="big", Key=key, UploadId=up, MultipartUpload={"Parts": parts}, **kw)


def step_upload():
    s3.create_bucket(Bucket="big")
    up = s3.create_multipart_upload(Bucket="big", Key="kept.bin", ContentType="video/mp4", Metadata={"take": "2"})[
        "UploadId"
    ]
    assert any(u["UploadId"] == up for u in s3.list_multipart_uploads(Bucket="big").get("Uploads", []))

    # A part sent twice: the second attempt counts. A first attempt with other bytes.
    s3.upload_part(Bucket="big", Key="kept.bin", UploadId=up, PartNumber=2, Body=b"a first try")
    etags = upload_parts("kept.bin", up, [PART1, PART2, PART3])
    assert [e for _, e in etags] == ['"%s"' % hashlib.md5(p).hexdigest() for p in (PART1, PART2, PART3)], etags
    listed = s3.list_parts(Bucket="big", Key="kept.bin", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed] == [
        (1, len(PART1), etags[0][1]),
        (2, len(PART2), etags[1][1]),
        (3, len(PART3), etags[2][1]),
    ], listed
    page = s3.list_parts(Bucket="big", Key="kept.bin", UploadId=up, MaxParts=2)
    assert page["IsTruncated"] and page["NextPartNumberMarker"] == 2, page
    rest = s3.list_parts(Bucket="big", Key="kept.bin", UploadId=up, PartNumberMarker=2)["Parts"]
    assert [p["PartNumber"] for p in rest] == [3], rest

    # Bad completes, each with S3's code; the upload stays open through them.
    bad = [(1, etags[0][1]), (2, '"%s"' % hashlib.md5(b"nope").hexdigest()), (3, etags[2][1])]
    assert code_of(lambda: complete("kept.bin", up, bad)) == "InvalidPart"
    assert code_of(lambda: complete("kept.bin", up, [etags[1], etags[0], etags[2]])) == "InvalidPartOrder"
    assert code_of(lambda: complete("kept.bin", up, [etags[0], (4, etags[2][1])])) == "InvalidPart"
    small = s3.upload_part(Bucket="big", Key="kept.bin", UploadId=up, PartNumber=9, Body=b"tiny")["ETag"]
    assert code_of(lambda: complete("kept.bin", up, [etags[2], (9, small)])) == "EntityTooSmall"
    assert code_of(lambda: complete("kept.bin", up, [])) == "MalformedXML"
    for n in (0, 10001):
        assert code_of(lambda: s3.upload_part(Bucket="big", Key="kept.bin", UploadId=up, PartNumber=n, Body=b"x")) in (
            "InvalidArgument",
        )
    assert (
        code_of(lambda: s3.upload_part(Bucket="big", Key="other.bin", UploadId=up, PartNumber=1, Body=b"x"))
        == "NoSuchUpload"
    ), "an upload belongs to its key"
    assert code_of(lambda: s3.list_parts(Bucket="big", Key="kept.bin", UploadId="00" * 16)) == "NoSuchUpload"
    assert code_of(lambda: s3.list_parts(Bucket="big", Key="kept.bin", UploadId="not-an-id")) == "NoSuchUpload"

    done = complete("kept.bin", up, etags)
    assert done["ETag"] == s3_etag([PART1, PART2, PART3]), (done["ETag"], s3_etag([PART1, PART2, PART3]))
    # Once completed the upload is gone.
    assert code_of(lambda: s3.list_parts(Bucket="big", Key="kept.bin", UploadId=up)) == "NoSuchUpload"
    assert code_of(lambda: complete("kept.bin", up, etags)) == "NoSuchUpload"
    assert not any(u["UploadId"] == up for u in s3.list_multipart_uploads(Bucket="big").get("Uploads", []))

    head = s3.head_object(Bucket="big", Key="kept.bin")
    assert head["ContentLength"] == len(WHOLE) and head["ETag"] == done["ETag"], head
    assert head["ContentType"] == "video/mp4" and head["Metadata"] == {"take": "2"}, head
    assert s3.get_object(Bucket="big", Key="kept.bin")["Body"].read() == WHOLE
    for first, last in [(5 * MIB - 3, 5 * MIB + 2), (0, 0), (10 * MIB + 5, len(WHOLE) - 1), (100, 10 * MIB + 100)]:
        got = s3.get_object(Bucket="big", Key="kept.bin", Range="bytes=%d-%d" % (first, last))["Body"].read()
        assert got == WHOLE[first : last + 1], (first, last)
    tail = s3.get_object(Bucket="big", Key="kept.bin", Range="bytes=-1500")["Body"].read()
    assert tail == WHOLE[-1500:]
    listed = s3.list_objects_v2(Bucket="big")["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("kept.bin", len(WHOLE), done["ETag"])], listed

    # Put-if-absent on complete: refused while the key exists, and the upload stays open.
    up2 = s3.create_multipart_upload(Bucket="big", Key="kept.bin")["UploadId"]
    e2 = upload_parts("kept.bin", up2, [b"replacement"])
    assert code_of(lambda: complete("kept.bin", up2, e2, IfNoneMatch="*")) == "PreconditionFailed"
    assert s3.get_object(Bucket="big", Key="kept.bin")["Body"].read() == WHOLE
    s3.abort_multipart_upload(Bucket="big", Key="kept.bin", UploadId=up2)
    assert code_of(lambda: complete("kept.bin", up2, e2)) == "NoSuchUpload"
    assert code_of(lambda: s3.abort_multipart_upload(Bucket="big", Key="kept.bin", UploadId=up2)) == "NoSuchUpload"

    # Part copies: whole and by range, from a plain object and from the multipart one.
    s3.put_object(Bucket="big", Key="plain.bin", Body=PART1)
    up3 = s3.create_multipart_upload(Bucket="big", Key="copied.bin")["UploadId"]
    c1 = s3.upload_part_copy(
        Bucket="big", Key="copied.bin", UploadId=up3, PartNumber=1, CopySource={"Bucket": "big", "Key": "plain.bin"}
    )["CopyPartResult"]["ETag"]
    c2 = s3.upload_part_copy(
        Bucket="big",
        Key="copied.bin",
        UploadId=up3,
        PartNumber=2,
        CopySource={"Bucket": "big", "Key": "kept.bin"},
        CopySourceRange="bytes=%d-%d" % (5 * MIB - 10, 5 * MIB + 9),
    )["CopyPartResult"]["ETag"]
    bad_range = lambda: s3.upload_part_copy(
        Bucket="big",
        Key="copied.bin",
        UploadId=up3,
        PartNumber=3,
        CopySource={"Bucket": "big", "Key": "plain.bin"},
        CopySourceRange="bytes=0-%d" % (5 * MIB),
    )
    assert code_of(bad_range) == "InvalidRange"
    complete("copied.bin", up3, [(1, c1), (2, c2)])
    got = s3.get_object(Bucket="big", Key="copied.bin")["Body"].read()
    assert got == PART1 + WHOLE[5 * MIB - 10 : 5 * MIB + 10]
    s3.delete_object(Bucket="big", Key="copied.bin")
    s3.delete_object(Bucket="big", Key="plain.bin")

    # Completed, then overwritten by a plain put: the parts become the sweep's.
    up4 = s3.create_multipart_upload(Bucket="big", Key="overwritten.bin")["UploadId"]
    complete("overwritten.bin", up4, upload_parts("overwritten.bin", up4, [PART1, PART3]))
    s3.put_object(Bucket="big", Key="overwritten.bin", Body=b"plain now")
    assert s3.get_object(Bucket="big", Key="overwritten.bin")["Body"].read() == b"plain now"

    # Abandoned: created, one part sent, never completed.
    up5 = s3.create_multipart_upload(Bucket="big", Key="abandoned.bin")["UploadId"]
    upload_parts("abandoned.bin", up5, [b"left behind"])
    uploads = s3.list_multipart_uploads(Bucket="big")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("abandoned.bin", up5)], uploads


def step_after_sweep():
    assert s3.get_object(Bucket="big", Key="kept.bin")["Body"].read() == WHOLE
    assert s3.list_multipart_uploads(Bucket="big").get("Uploads", []) == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="big")["Contents"]]
    assert keys == ["kept.bin", "overwritten.bin"], keys


{"upload": step_upload, "after-sweep": step_after_sweep}[os.environ["OUTLAST_S3_STEP"]]()
print("ok")
