"""Bucket settings through boto3 and a browser's requests (urllib): the public flag as a
canned ACL, CORS rules stored, read back and applied to preflights and to answers, and a
website configuration that the site listener serves.

The bucket `site` was made public by `outlast bucket create site --public`; `closed` was
made by the CLI too, private."""

import os
import time
import urllib.error
import urllib.request

from outlast_s3 import ENDPOINT, client, code_of

s3 = client(os.environ["OUTLAST_S3_KEY_ID"], os.environ["OUTLAST_S3_SECRET"])


def anonymous(method, path, headers=None):
    req = urllib.request.Request(ENDPOINT + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers, r.read()  # headers: case-insensitive
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


# Public from the CLI: anyone reads; private: no one without a key.
s3.put_object(Bucket="site", Key="index.html", Body=b"<h1>hi</h1>", ContentType="text/html")
s3.put_object(Bucket="closed", Key="secret.txt", Body=b"no")
assert anonymous("GET", "/site/index.html")[:3:2] == (200, b"<h1>hi</h1>")
assert anonymous("GET", "/closed/secret.txt")[0] == 403
assert anonymous("PUT", "/site/new.txt")[0] == 403, "public is read-only"

# The public flag as S3's canned ACLs, both ways.
s3.put_bucket_acl(Bucket="closed", ACL="public-read")
assert anonymous("GET", "/closed/secret.txt")[0] == 200
grants = s3.get_bucket_acl(Bucket="closed")["Grants"]
assert any(g["Grantee"].get("URI", "").endswith("AllUsers") and g["Permission"] == "READ" for g in grants), grants
s3.put_bucket_acl(Bucket="closed", ACL="private")
assert anonymous("GET", "/closed/secret.txt")[0] == 403
assert code_of(lambda: s3.put_bucket_acl(Bucket="closed", ACL="public-read-write")) == "NotImplemented"

# CORS: none yet, then rules stored and read back, refused when malformed.
assert code_of(lambda: s3.get_bucket_cors(Bucket="site")) == "NoSuchCORSConfiguration"
rules = [
    {
        "AllowedOrigins": ["https://*.example.com"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["content-type", "x-amz-*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 600,
    }
]
s3.put_bucket_cors(Bucket="site", CORSConfiguration={"CORSRules": rules})
got = s3.get_bucket_cors(Bucket="site")["CORSRules"]
assert got == rules, got
bad = [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]
assert code_of(lambda: s3.put_bucket_cors(Bucket="site", CORSConfiguration={"CORSRules": bad})) == "InvalidRequest"

# A browser's preflight: allowed as the rule says, refused otherwise.
status, headers, _ = anonymous(
    "OPTIONS",
    "/site/index.html",
    {
        "Origin": "https://www.example.com",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "Content-Type, X-Amz-Date",
    },
)
assert status == 200, (status, headers)
assert headers.get("Access-Control-Allow-Origin") == "https://www.example.com", headers
assert "PUT" in headers.get("Access-Control-Allow-Methods") and headers.get("Access-Control-Max-Age") == "600", headers
assert headers.get("Access-Control-Allow-Headers") == "Content-Type, X-Amz-Date", headers
for origin, method, hdrs in [
    ("https://evil.example.org", "GET", ""),
    ("https://www.example.com", "DELETE", ""),
    ("https://www.example.com", "PUT", "Authorization"),
]:
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if hdrs:
        h["Access-Control-Request-Headers"] = hdrs
    status, headers, body = anonymous("OPTIONS", "/site/index.html", h)
    assert status == 403 and b"AccessForbidden" in body, (origin, method, status, body)
    assert "Access-Control-Allow-Origin" not in headers
assert anonymous("OPTIONS", "/site/index.html")[0] == 400, "a preflight without an Origin"
assert anonymous("OPTIONS", "/closed/secret.txt", {"Origin": "https://a.example.com", "Access-Control-Request-Method": "GET"})[0] == 403

# The answer to a request from an allowed origin carries the headers; others do not.
status, headers, body = anonymous("GET", "/site/index.html", {"Origin": "https://a.example.com"})
assert status == 200 and headers.get("Access-Control-Allow-Origin") == "https://a.example.com", headers
assert headers.get("Access-Control-Expose-Headers") == "ETag", headers
status, headers, _ = anonymous("GET", "/site/index.html", {"Origin": "https://evil.example.org"})
assert status == 200 and "Access-Control-Allow-Origin" not in headers, headers

s3.delete_bucket_cors(Bucket="site")
assert code_of(lambda: s3.get_bucket_cors(Bucket="site")) == "NoSuchCORSConfiguration"

# A website set by an S3 client (as `aws s3 website` does): served by the site listener
# (which looks at the list of websites again after a second), read back, refused when
# malformed or asking for redirects, and removed.
SITE = os.environ["OUTLAST_SITE"]


def visit(path, want=None):
    """The status and body of `path` on the site listener; with `want` (a status, or a
    status and body), the first answer that matches it within three seconds (or the last)."""
    for _ in range(30):
        try:
            with urllib.request.urlopen(SITE + path) as r:
                got = r.status, r.read()
        except urllib.error.HTTPError as e:
            got = e.code, e.read()
        if want is None or got == want or got[0] == want:
            return got
        time.sleep(0.1)
    return got


assert code_of(lambda: s3.get_bucket_website(Bucket="site")) == "NoSuchWebsiteConfiguration"
assert visit("/")[0] == 404, "no website yet"
s3.put_object(Bucket="site", Key="home.html", Body=b"<h1>home</h1>", ContentType="text/html")
s3.put_object(Bucket="site", Key="missing.html", Body=b"<h1>not here</h1>", ContentType="text/html")
config = {"IndexDocument": {"Suffix": "home.html"}, "ErrorDocument": {"Key": "missing.html"}}
s3.put_bucket_website(Bucket="site", WebsiteConfiguration=config)
got = s3.get_bucket_website(Bucket="site")
assert got["IndexDocument"] == {"Suffix": "home.html"} and got["ErrorDocument"] == {"Key": "missing.html"}, got
assert visit("/", (200, b"<h1>home</h1>")) == (200, b"<h1>home</h1>")
assert visit("/nothing/here") == (404, b"<h1>not here</h1>")
for bad, code in [
    ({"IndexDocument": {"Suffix": "a/b.html"}}, "InvalidArgument"),
    ({"ErrorDocument": {"Key": "missing.html"}}, "InvalidArgument"),
    ({"RedirectAllRequestsTo": {"HostName": "example.com"}}, "NotImplemented"),
]:
    assert code_of(lambda: s3.put_bucket_website(Bucket="site", WebsiteConfiguration=bad)) == code, bad
assert s3.get_bucket_website(Bucket="site")["IndexDocument"] == {"Suffix": "home.html"}, "a refused one changes nothing"
assert code_of(lambda: s3.get_bucket_website(Bucket="closed")) == "NoSuchWebsiteConfiguration"
s3.delete_bucket_website(Bucket="site")
assert code_of(lambda: s3.get_bucket_website(Bucket="site")) == "NoSuchWebsiteConfiguration"
assert visit("/", 404)[0] == 404
s3.put_bucket_website(Bucket="site", WebsiteConfiguration=config)
print("ok")
