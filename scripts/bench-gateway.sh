#!/usr/bin/env bash
# The gateway's benchmarks, side by side in one run (numbers go in notes, never in tests):
#   S3: outlast serve (4-of-6 local folders) against s3s-fs 0.14.1 over one folder, the same
#       boto3 client: PUT/GET of 4 KiB (1 and 32 clients), 1 MiB and 256 MiB objects, 256 MiB
#       files through boto3's transfer manager (multipart, as clients move large files), and
#       the outlast CLI's put/get of 256 MiB on the same store; GETs of 4 KiB while 4 MiB PUTs run;
#       one 256 MiB put at a time, side by side: the CLI, boto3 over HTTP (payload signed) and
#       over HTTPS (unsigned, a trailing CRC32: how SDKs send over TLS), and curl with a presigned
#       URL (a client that hashes nothing, so the gateway sets the pace), the disk synced before each,
#       with the CPU time each took (the CLI's; the gateway's and curl's) and the rate that CPU
#       time would allow on this machine's cores if none of them were ever idle;
#       peak RSS of the gateway while 16 clients upload 256 MiB each (multipart).
#   S3 GETs again with wrk over presigned URLs (each signature checked), so that the server
#       rather than the Python client sets the pace: 4 KiB objects, 1 and 32 connections.
#   Sites: wrk, 64 connections, a 16 KiB page: outlast (cache warm, cache off) against lighttpd
#       serving the same folder; outlast with one provider 50x slower, cache off.
# Usage: scripts/bench-gateway.sh [quick]   (quick: fewer and smaller runs)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
TOOLS=${OUTLAST_BENCH_TOOLS:-/var/tmp/outlast-bench-tools}
W=$(mktemp -d /tmp/outlast-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
log() { echo "bench: $*" >&2; }
unset AWS_CA_BUNDLE

# Tools, installed once.
command -v wrk >/dev/null || { log "apt-get install wrk"; apt-get update -qq >/dev/null || true; apt-get install -y -qq wrk >/dev/null; }
[ -x /usr/sbin/lighttpd ] || { log "apt-get install lighttpd"; apt-get install -y -qq lighttpd >/dev/null; }
[ -x /usr/bin/time ] || { log "apt-get install time"; apt-get install -y -qq time >/dev/null; }
python3 -c 'import boto3' 2>/dev/null || { log "pip install boto3"; python3 -m pip install -q boto3 >/dev/null; }
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
  log "cargo install s3s-fs 0.14.1 (later versions need a newer compiler)"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$TOOLS" >/dev/null 2>&1
fi
cargo build --release -q
OUT=$PWD/target/release/outlast
PY=$PWD/scripts/bench_gateway.py

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in clock ticks
TICKS=$(getconf CLK_TCK)

# The store and its gateway.
mkdir -p "$W/store" && cd "$W/store"
"$OUT" init --local providers --providers 6 --k 4 >/dev/null
KEY=$("$OUT" --json key create)
ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["access_key_id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret_access_key"])' "$KEY")
start_gateway() { # extra args...; sets GW_PID
  "$OUT" serve --listen 127.0.0.1:19601 --site-listen 127.0.0.1:19602 --repair-every 0s "$@" >"$W/gw.out" 2>"$W/gw.log" &
  GW_PID=$!; PIDS+=("$GW_PID"); wait_port 19601; wait_port 19602
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }
start_gateway

# s3s-fs over one folder, the same key.
mkdir -p "$W/s3s-fs"
"$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port 19611 --access-key "$ID" --secret-key "$SECRET" "$W/s3s-fs" >"$W/s3s.log" 2>&1 &
PIDS+=($!); wait_port 19611

s3() { python3 "$PY" "$1" "$ID" "$SECRET" "${@:2}"; }
if [ "$QUICK" = quick ]; then SMALL=400; BIGN=1; else SMALL=2000; BIGN=3; fi
head -c $((256 << 20)) /dev/urandom >"$W/big.bin"
for target in outlast:http://127.0.0.1:19601 s3s-fs:http://127.0.0.1:19611; do
  name=${target%%:*}; ep=${target#*:}
  log "S3 on $name"
  s3 "$ep" ops 4096 $((SMALL / 4)) 1 | sed "s/^/$name /"
  s3 "$ep" ops 4096 "$SMALL" 32 | sed "s/^/$name /"
  s3 "$ep" ops $((1 << 20)) 64 4 | sed "s/^/$name /"
  s3 "$ep" ops $((256 << 20)) "$BIGN" 1 | sed "s/^/$name /"
  s3 "$ep" transfer "$W/big.bin" "$BIGN" | sed "s/^/$name /"
  s3 "$ep" mixed 5 | sed "s/^/$name /"
  s3 "$ep" presign 4096 256 "$W/urls-$name.txt"
done

# wrk's Lua script: each request the next URL of a list, round robin.
cat >"$W/urls.lua" <<'LUA'
local paths, i = {}, 0
for line in io.lines(os.getenv("URLS")) do paths[#paths + 1] = line:gsub("^http://[^/]+", "") end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
LUA
if [ "$QUICK" = quick ]; then DUR=5s; else DUR=15s; fi
wrk_line() { # label op connections url [script]
  local out rps p50 p99
  out=$(wrk -t"$(( $3 < 2 ? 1 : 2 ))" -c"$3" -d"$DUR" --latency ${5:+-s "$5"} "$4" 2>&1)
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  if grep -q "Non-2xx" <<<"$out"; then log "$1: $(grep Non-2xx <<<"$out")"; fi
  echo "$1 {\"op\": \"$2\", \"connections\": $3, \"rps\": $rps, \"p50\": \"$p50\", \"p99\": \"$p99\"}"
}
for target in outlast:http://127.0.0.1:19601 s3s-fs:http://127.0.0.1:19611; do
  name=${target%%:*}; ep=${target#*:}
  for c in 1 32; do URLS="$W/urls-$name.txt" wrk_line "$name" wrk-presigned-get-4k "$c" "$ep" "$W/urls.lua"; done
done

log "the CLI on the same store, 256 MiB"
for i in $(seq 1 "$BIGN"); do
  t0=$(date +%s.%N); "$OUT" put "$W/big.bin" "cli/big$i" >/dev/null; t1=$(date +%s.%N)
  "$OUT" get "cli/big$i" "$W/back.bin" >/dev/null; t2=$(date +%s.%N)
  python3 -c "import sys; a,b,c=map(float,sys.argv[1:]); print('cli {\"op\": \"put+get\", \"size\": 268435456, \"put_mib_per_s\": %.1f, \"get_mib_per_s\": %.1f}' % (256/(b-a), 256/(c-b)))" "$t0" "$t1" "$t2"
done

log "one 256 MiB put at a time: the CLI, boto3 over HTTP and HTTPS, curl presigned"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$W/tls.key" -out "$W/tls.crt" 2>/dev/null
"$OUT" serve --listen 127.0.0.1:19603 --tls-cert "$W/tls.crt" --tls-key "$W/tls.key" --repair-every 0s \
  >"$W/gw-tls.out" 2>"$W/gw-tls.log" &
TLS_PID=$!; PIDS+=("$TLS_PID"); wait_port 19603
for i in $(seq 1 "$BIGN"); do
  sync; t0=$(date +%s.%N); /usr/bin/time -f "%U %S" -o "$W/cli.cpu" "$OUT" put "$W/big.bin" "cli/once$i" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "import sys; a,b,u,s=map(float,sys.argv[1:]); print('cli {\"op\": \"put-once\", \"size\": 268435456, \"mib_per_s\": %.1f, \"cpu_s\": %.2f}' % (256/(b-a), u+s))" "$t0" "$t1" $(cat "$W/cli.cpu")
  sync; s3 http://127.0.0.1:19601 put "$W/big.bin" "http/once$i" | sed "s/^/outlast-http /"
  sync; OUTLAST_BENCH_CA="$W/tls.crt" s3 https://127.0.0.1:19603 put "$W/big.bin" "https/once$i" | sed "s/^/outlast-https /"
  url=$(s3 http://127.0.0.1:19601 put-url "curl/once$i")
  sync; g0=$(cpu_ticks "$GW_PID"); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$W/curl.cpu" curl -sf -o /dev/null -T "$W/big.bin" "$url"
  t1=$(date +%s.%N); g1=$(cpu_ticks "$GW_PID")
  # cpu_s: the gateway's and curl's CPU time together; bound: the rate if that work were
  # spread over every core without a moment idle, what no scheduling of it can beat.
  python3 -c "import sys; a,b,g0,g1,u,s=map(float,sys.argv[1:]); c=(g1-g0)/$TICKS+u+s; print('outlast-curl {\"op\": \"put-once\", \"size\": 268435456, \"mib_per_s\": %.1f, \"cpu_s\": %.2f, \"gateway_cpu_s\": %.2f, \"all_cores_bound_mib_per_s\": %.0f}' % (256/(b-a), c, (g1-g0)/$TICKS, 256/(c/$(nproc))))" "$t0" "$t1" "$g0" "$g1" $(cat "$W/curl.cpu")
done
kill "$TLS_PID"; wait "$TLS_PID" 2>/dev/null || true

log "peak RSS of the gateway: 16 clients uploading 256 MiB each"
stop_gateway; start_gateway
s3 http://127.0.0.1:19601 uploads "$W/big.bin" 16 | sed "s/^/outlast /"
echo "outlast {\"op\": \"gateway-peak-rss\", \"clients\": 16, \"size\": 268435456, \"peak_mib\": $(( $(peak_kib "$GW_PID") / 1024 ))}"

# Sites: 100 pages of 16 KiB, the same folder under lighttpd.
log "sites"
# The S3 runs above leave gigabytes of dirty pages: written back now, not while pages are timed.
sync
mkdir -p "$W/site"
for i in $(seq 1 100); do head -c 12288 /dev/urandom | base64 -w0 >"$W/site/p$i.html"; done
cp "$W/site/p1.html" "$W/site/index.html"
"$OUT" site publish "$W/site" www >/dev/null
cat >"$W/lighttpd.conf" <<EOF
server.document-root = "$W/site"
server.port = 19621
server.bind = "127.0.0.1"
mimetype.assign = (".html" => "text/html")
EOF
/usr/sbin/lighttpd -D -f "$W/lighttpd.conf" >/dev/null 2>&1 &
PIDS+=($!); wait_port 19621
bench_site() { wrk_line "$1" site-16k 64 "$2"; }
bench_site lighttpd http://127.0.0.1:19621/p7.html
stop_gateway; start_gateway
curl -s -o /dev/null http://127.0.0.1:19602/p7.html
bench_site outlast-warm http://127.0.0.1:19602/p7.html
stop_gateway; start_gateway --site-cache-mib 0
bench_site outlast-cold http://127.0.0.1:19602/p7.html
stop_gateway
# One provider 50x slower than a local folder's usual answer (about 0.2 ms): 10 ms more.
OUTLAST_FAULTS="local3:latency=10ms" start_gateway --site-cache-mib 0
bench_site outlast-cold-one-slow http://127.0.0.1:19602/p7.html
stop_gateway
