#!/usr/bin/env bash
# The aws CLI, rclone and restic against the gateway at $OUTLAST_S3_ENDPOINT, with the key in
# $OUTLAST_S3_KEY_ID / $OUTLAST_S3_SECRET: each writes, lists, reads back and checks what it
# wrote, large files going up in parts. Exits non-zero, saying which step, at the first failure.
set -euo pipefail
unset AWS_CA_BUNDLE # this machine may export one; it breaks clients against plain http
EP=$OUTLAST_S3_ENDPOINT
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
step() { echo "== $*" >&2; }

mkdir -p "$W/tree/sub/deeper" "$W/back"
head -c 20000000 /dev/urandom >"$W/big.bin" # three parts of 8 MiB for the aws CLI
for i in $(seq 1 12); do head -c $((i * 997)) /dev/urandom >"$W/tree/f$i.txt"; done
echo "a/../b is a legal key" >"$W/tree/sub/a..b"
echo "listed URL-encoded, read back as it is" >"$W/tree/sub/odd name+100%.txt"
head -c 70000 /dev/urandom >"$W/tree/sub/deeper/bin.dat"
: >"$W/tree/sub/empty"

export AWS_ACCESS_KEY_ID=$OUTLAST_S3_KEY_ID AWS_SECRET_ACCESS_KEY=$OUTLAST_S3_SECRET AWS_DEFAULT_REGION=us-east-1
export AWS_MAX_ATTEMPTS=1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
# Each request waits up to 5 minutes for its answer, not the default minute: twice, on a loaded
# machine, one small PUT of a sync had no answer within the minute and its cause was not found.
# With the longer wait a slow answer (it is then logged) tells itself apart from a hang, which
# still fails the test.
a() { aws --endpoint-url "$EP" --cli-read-timeout 300 "$@"; }

step "aws s3 mb, cp in parts, cp back"
a s3 mb s3://awscli >/dev/null
a s3 cp --only-show-errors "$W/big.bin" s3://awscli/big.bin
a s3 cp --only-show-errors s3://awscli/big.bin "$W/back/big.bin"
cmp "$W/big.bin" "$W/back/big.bin"
etag=$(a s3api head-object --bucket awscli --key big.bin --query ETag --output text)
[[ $etag == *-3\" ]] || { echo "multipart ETag: $etag" >&2; exit 1; }

step "aws s3 sync up, again after a change (only it goes), down, rm"
a s3 sync --only-show-errors "$W/tree" s3://awscli/tree
echo changed >>"$W/tree/f3.txt"
moved=$(a s3 sync "$W/tree" s3://awscli/tree | grep -c upload: || true)
[[ $moved == 1 ]] || { echo "second sync uploaded $moved files, not 1" >&2; exit 1; }
a s3 sync --only-show-errors s3://awscli/tree "$W/back/tree"
diff -r "$W/tree" "$W/back/tree"
listed=$(a s3 ls --recursive s3://awscli/tree/ | wc -l)
[[ $listed == 16 ]] || { echo "listed $listed keys, not 16" >&2; exit 1; }
a s3 rm --only-show-errors --recursive s3://awscli/tree
[[ -z $(a s3 ls --recursive s3://awscli/tree/) ]]

step "aws s3api: put, ranged get, list-objects-v2, delete"
a s3api put-object --bucket awscli --key api/one --body "$W/tree/f5.txt" --content-type text/plain >/dev/null
a s3api get-object --bucket awscli --key api/one --range bytes=10-19 "$W/back/range" >/dev/null
cmp <(head -c 20 "$W/tree/f5.txt" | tail -c 10) "$W/back/range"
[[ $(a s3api list-objects-v2 --no-paginate --bucket awscli --prefix api/ --query 'KeyCount' --output text) == 1 ]]
a s3api delete-object --bucket awscli --key api/one
a s3api head-object --bucket awscli --key api/one >/dev/null 2>&1 && { echo "deleted key still there" >&2; exit 1; }

step "aws s3 website, then s3api get-bucket-website and delete-bucket-website"
a s3 website s3://awscli --index-document start.html --error-document oops.html
[[ $(a s3api get-bucket-website --bucket awscli --query 'IndexDocument.Suffix' --output text) == start.html ]]
[[ $(a s3api get-bucket-website --bucket awscli --query 'ErrorDocument.Key' --output text) == oops.html ]]
a s3api delete-bucket-website --bucket awscli
a s3api get-bucket-website --bucket awscli >/dev/null 2>&1 && { echo "website still set" >&2; exit 1; }

step "rclone copy, sync, check (parts of 5 MiB)"
export RCLONE_CONFIG_OL_TYPE=s3 RCLONE_CONFIG_OL_PROVIDER=Other RCLONE_CONFIG_OL_ENDPOINT=$EP
export RCLONE_CONFIG_OL_ACCESS_KEY_ID=$OUTLAST_S3_KEY_ID RCLONE_CONFIG_OL_SECRET_ACCESS_KEY=$OUTLAST_S3_SECRET
export RCLONE_CONFIG_OL_FORCE_PATH_STYLE=true RCLONE_CONFIG_OL_REGION=us-east-1
export RCLONE_CONFIG=/dev/null RCLONE_S3_UPLOAD_CUTOFF=5M RCLONE_S3_CHUNK_SIZE=5M
rclone mkdir ol:rclone
rclone copy "$W/tree" ol:rclone/tree
rclone copyto "$W/big.bin" ol:rclone/big.bin
rclone check "$W/tree" ol:rclone/tree
rclone check --download "$W/tree" ol:rclone/tree
rm "$W/tree/f1.txt"
echo new >"$W/tree/new.txt"
rclone sync "$W/tree" ol:rclone/tree
rclone check "$W/tree" ol:rclone/tree
rclone copyto ol:rclone/big.bin "$W/back/rclone-big.bin"
cmp "$W/big.bin" "$W/back/rclone-big.bin"

step "restic backup, check --read-data, restore"
export RESTIC_PASSWORD=not-a-secret RESTIC_REPOSITORY=s3:$EP/restic RESTIC_CACHE_DIR=$W/restic-cache
restic --quiet init
restic --quiet backup "$W/tree" "$W/big.bin"
restic --quiet check --read-data
restic --quiet restore latest --target "$W/restored"
diff -r "$W/tree" "$W/restored$W/tree"
cmp "$W/big.bin" "$W/restored$W/big.bin"
echo ok
