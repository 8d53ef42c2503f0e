#!/usr/bin/env bash
# Installs (idempotently) and starts the real storage servers the test suite talks to, all on
# 127.0.0.1: S3 (moto_server), Azure Blob (azurite), SFTP (a second sshd), WebDAV (lighttpd),
# plus local folders, and the S3 clients the gateway is tested with (boto3, the aws CLI, rclone,
# restic). Writes an Outlast provider list for the servers to $OUTLAST_TEST_DIR/providers.toml.
#
#   scripts/servers.sh install     install what is missing
#   scripts/servers.sh start       install, start all, write providers.toml
#   scripts/servers.sh stop [KIND] stop all servers, or one kind (s3, azblob, sftp, webdav)
#   scripts/servers.sh start KIND  start one kind again (after stop KIND)
set -euo pipefail

DIR=${OUTLAST_TEST_DIR:-/tmp/outlast-test-servers}
S3_PORT=${OUTLAST_S3_PORT:-19000}
AZ_PORT=${OUTLAST_AZ_PORT:-19010}
SFTP_PORT=${OUTLAST_SFTP_PORT:-19022}
DAV_PORT=${OUTLAST_DAV_PORT:-19080}
# npm packages live outside the per-run folder so repeated runs install them once.
TOOLS=${OUTLAST_TOOLS_DIR:-/var/tmp/outlast-test-tools}
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
mkdir -p "$DIR"

log() { echo "servers: $*" >&2; }

install() {
  local apt_need=()
  command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || apt_need+=(openssh-server)
  command -v ssh >/dev/null 2>&1 || apt_need+=(openssh-client)
  [ -x /usr/sbin/lighttpd ] || apt_need+=(lighttpd)
  [ -e /usr/lib/lighttpd/mod_webdav.so ] || apt_need+=(lighttpd-mod-webdav)
  command -v curl >/dev/null 2>&1 || apt_need+=(curl)
  command -v rclone >/dev/null 2>&1 || apt_need+=(rclone)
  command -v restic >/dev/null 2>&1 || apt_need+=(restic)
  if [ ${#apt_need[@]} -gt 0 ]; then
    log "apt-get install ${apt_need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_need[@]}" >/dev/null
  fi
  # One resolver run for all three: the aws CLI pins botocore, and boto3 must agree with it.
  if ! python3 -c 'import moto.server, boto3, azure.storage.blob, awscli' >/dev/null 2>&1 || ! command -v aws >/dev/null 2>&1; then
    log "pip install moto[server] azure-storage-blob awscli"
    python3 -m pip install -q 'moto[server]' azure-storage-blob awscli >/dev/null
  fi
  if [ ! -x "$TOOLS/node_modules/.bin/azurite-blob" ]; then
    log "npm install azurite"
    mkdir -p "$TOOLS"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS" azurite >/dev/null
  fi
}

wait_port() { # port name
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  log "$2 did not start on port $1"; return 1
}

start_s3() {
  mkdir -p "$DIR/s3"
  nohup python3 -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$DIR/s3/log" 2>&1 &
  echo $! >"$DIR/s3/pid"
  wait_port "$S3_PORT" s3
  python3 - "$S3_PORT" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
if "outlast" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket="outlast")
PY
}

start_azblob() {
  mkdir -p "$DIR/azblob/data"
  nohup "$TOOLS/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
    --location "$DIR/azblob/data" --disableTelemetry --skipApiVersionCheck --loose >"$DIR/azblob/log" 2>&1 &
  echo $! >"$DIR/azblob/pid"
  wait_port "$AZ_PORT" azblob
  python3 - "$AZ_PORT" "$AZ_ACCOUNT" "$AZ_KEY" <<'PY'
import sys
from azure.storage.blob import BlobServiceClient
from azure.core.exceptions import ResourceExistsError
port, account, key = sys.argv[1:]
conn = (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{account};")
try:
    BlobServiceClient.from_connection_string(conn).create_container("outlast")
except ResourceExistsError:
    pass
PY
}

start_sftp() {
  local d="$DIR/sftp"
  mkdir -p "$d/root" /run/sshd
  [ -f "$d/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
  [ -f "$d/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$d/client_key"
  cp "$d/client_key.pub" "$d/authorized_keys"
  chmod 600 "$d/client_key" "$d/host_key"
  cat >"$d/sshd_config" <<CONF
Port $SFTP_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/pid
AuthorizedKeysFile $d/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin yes
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
CONF
  /usr/sbin/sshd -f "$d/sshd_config" -E "$d/log"
  wait_port "$SFTP_PORT" sftp
}

start_webdav() {
  local d="$DIR/webdav"
  mkdir -p "$d/root" "$d/tmp"
  cat >"$d/lighttpd.conf" <<CONF
server.modules = ("mod_webdav")
server.document-root = "$d/root"
server.bind = "127.0.0.1"
server.port = $DAV_PORT
server.pid-file = "$d/pid"
server.errorlog = "$d/log"
server.upload-dirs = ("$d/tmp")
webdav.activate = "enable"
webdav.is-readonly = "disable"
CONF
  /usr/sbin/lighttpd -f "$d/lighttpd.conf"
  wait_port "$DAV_PORT" webdav
}

stop_kind() {
  local pidfile="$DIR/$1/pid"
  if [ -f "$pidfile" ]; then
    local pid; pid=$(cat "$pidfile")
    kill -9 "$pid" 2>/dev/null || true
    # azurite runs under node with children; kill the whole group it may have left.
    pkill -9 -P "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

write_providers() {
  mkdir -p "$DIR/local"
  cat >"$DIR/providers.toml" <<TOML
# Written by scripts/servers.sh: one provider per server kind on 127.0.0.1.
[[providers]]
name = "local"
domain = "local"
scheme = "fs"
options = { root = "$DIR/local" }

[[providers]]
name = "s3"
domain = "moto"
scheme = "s3"
options = { bucket = "outlast", endpoint = "http://127.0.0.1:$S3_PORT", region = "us-east-1", access_key_id = "test", secret_access_key = "test", disable_config_load = "true", disable_ec2_metadata = "true" }

[[providers]]
name = "azblob"
domain = "azurite"
scheme = "azblob"
options = { container = "outlast", endpoint = "http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT", account_name = "$AZ_ACCOUNT", account_key = "$AZ_KEY" }

[[providers]]
name = "sftp"
domain = "sshd"
scheme = "sftp"
options = { endpoint = "ssh://root@127.0.0.1:$SFTP_PORT", root = "$DIR/sftp/root", key = "$DIR/sftp/client_key", known_hosts_strategy = "accept" }

[[providers]]
name = "webdav"
domain = "lighttpd"
scheme = "webdav"
options = { endpoint = "http://127.0.0.1:$DAV_PORT", root = "/" }
TOML
  echo "$DIR/providers.toml"
}

cmd=${1:-start}
case "$cmd" in
  install) install ;;
  start)
    if [ -n "${2:-}" ]; then "start_$2"; exit 0; fi
    install
    for k in s3 azblob sftp webdav; do stop_kind "$k"; done
    start_s3; start_azblob; start_sftp; start_webdav
    write_providers ;;
  stop)
    if [ -n "${2:-}" ]; then stop_kind "$2"; exit 0; fi
    for k in s3 azblob sftp webdav; do stop_kind "$k"; done ;;
  *) echo "usage: $0 install|start [KIND]|stop [KIND]" >&2; exit 2 ;;
esac
