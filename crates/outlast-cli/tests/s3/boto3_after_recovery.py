"""After `outlast recover` from a lost state folder: the bucket, its objects and the admin key
are back; the read-only key was deleted since, and is refused."""

import os

from outlast_s3 import client, code_of

s3 = client(os.environ["OUTLAST_S3_KEY_ID"], os.environ["OUTLAST_S3_SECRET"])
assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos"]
assert s3.get_object(Bucket="photos", Key="new.txt")["Body"].read() == b"second"
deleted = client(os.environ["OUTLAST_S3_READ_KEY_ID"], os.environ["OUTLAST_S3_READ_SECRET"])
assert code_of(deleted.list_buckets) == "InvalidAccessKeyId"
print("boto3 after recovery: ok")
