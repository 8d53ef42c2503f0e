"""What the client scripts share: a boto3 client of the gateway under test, and the S3 error
code of a call that must fail."""

import os

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["OUTLAST_S3_ENDPOINT"]
# The certificate authority of an HTTPS gateway (its self-signed certificate), if it is one.
CA = os.environ.get("OUTLAST_S3_CA")


def client(key_id, secret, **cfg):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        verify=CA,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **cfg),
    )


def code_of(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("the call succeeded")
