"""Two gateways on one store ($OUTLAST_S3_ENDPOINT and $OUTLAST_S3_ENDPOINT_B): what one
writes the other reads at once, listings agree, an overwrite through one is never served stale
by the other, and a multipart upload begun on one is finished on the other."""

import os

import boto3
from botocore.config import Config

from outlast_s3 import code_of


def gateway(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ["OUTLAST_S3_KEY_ID"],
        aws_secret_access_key=os.environ["OUTLAST_S3_SECRET"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


a = gateway(os.environ["OUTLAST_S3_ENDPOINT"])
b = gateway(os.environ["OUTLAST_S3_ENDPOINT_B"])

a.create_bucket(Bucket="shared")
assert code_of(lambda: b.create_bucket(Bucket="shared")) == "BucketAlreadyOwnedByYou"
for i in range(20):
    (a if i % 2 else b).put_object(Bucket="shared", Key="k%02d" % i, Body=b"v%d" % i)
    # Read-after-write through the other gateway, at once.
    other = b if i % 2 else a
    assert other.get_object(Bucket="shared", Key="k%02d" % i)["Body"].read() == b"v%d" % i
keys = lambda c: [o["Key"] for o in c.list_objects_v2(Bucket="shared")["Contents"]]
assert keys(a) == keys(b) == ["k%02d" % i for i in range(20)]

# Overwrites, alternating: each gateway serves the newest at once.
for round in range(5):
    writer, reader = (a, b) if round % 2 else (b, a)
    writer.put_object(Bucket="shared", Key="hot", Body=b"round %d" % round)
    assert reader.get_object(Bucket="shared", Key="hot")["Body"].read() == b"round %d" % round
    assert reader.head_object(Bucket="shared", Key="hot")["ContentLength"] == len(b"round %d" % round)
b.delete_object(Bucket="shared", Key="hot")
assert code_of(lambda: a.get_object(Bucket="shared", Key="hot")) == "NoSuchKey"

# A multipart upload begun on one gateway, parts through both, completed on the other.
up = a.create_multipart_upload(Bucket="shared", Key="big")["UploadId"]
assert [u["UploadId"] for u in b.list_multipart_uploads(Bucket="shared")["Uploads"]] == [up]
p1 = bytes(range(256)) * (5 * 4096)
e1 = a.upload_part(Bucket="shared", Key="big", UploadId=up, PartNumber=1, Body=p1)["ETag"]
e2 = b.upload_part(Bucket="shared", Key="big", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
parts = {"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]}
b.complete_multipart_upload(Bucket="shared", Key="big", UploadId=up, MultipartUpload=parts)
assert a.get_object(Bucket="shared", Key="big")["Body"].read() == p1 + b"tail"
assert code_of(lambda: a.abort_multipart_upload(Bucket="shared", Key="big", UploadId=up)) == "NoSuchUpload"
print("ok")
