#!/usr/bin/env bash
# End-to-end benchmark, side by side in one run: `outlast put`/`get` of a 1 GiB file on six
# local-folder providers (4-of-6) beside `cp` of the same number of bytes and beside
# `rclone copy` of the file to six local folders; then peak RSS of put and get of a 4 GiB file.
# Prints medians of 3 runs and the ratios. Not part of the test suite.
# With OUTLAST_BASELINE_BIN=/path/to/an/older/outlast, that binary's put and get run in the same
# rounds on a store of its own, and the ratios new/old are printed too.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rclone >/dev/null || { apt-get update -qq && apt-get install -y -qq rclone >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p outlast-cli
BIN=$PWD/target/release/outlast
W=${OUTLAST_BENCH_DIR:-$(mktemp -d /var/tmp/outlast-bench.XXXXXX)}
trap 'rm -rf "$W"' EXIT
cd "$W"
head -c 1G /dev/urandom >one.bin
head -c 1536M /dev/urandom >stored.bin   # what 4-of-6 stores for 1 GiB: 1.5x
"$BIN" init --local stores --providers 6 --k 4 >/dev/null
BASE=${OUTLAST_BASELINE_BIN:-}
if [ -n "$BASE" ]; then
  mkdir -p base && (cd base && "$BASE" init --local stores --providers 6 --k 4 >/dev/null)
fi

now() { date +%s.%N; }
median() { sort -n | sed -n 2p; }
secs() { local t0; t0=$(now); "$@" >/dev/null; echo "$(now) - $t0" | bc -l; }

put_t=(); get_t=(); cpput_t=(); cpget_t=(); rclone_t=(); cpsync_t=(); bput_t=(); bget_t=()
for r in 1 2 3; do
  if [ -n "$BASE" ]; then
    (cd base && "$BASE" rm one >/dev/null 2>&1) || true
    sync
    bput_t+=("$(cd base && secs "$BASE" put ../one.bin one)")
    sync
    bget_t+=("$(cd base && secs "$BASE" get one ../out.bin)")
    cmp one.bin out.bin
    rm -f out.bin
  fi
  "$BIN" rm one >/dev/null 2>&1 || true
  sync
  put_t+=("$(secs "$BIN" put one.bin one)")
  sync
  get_t+=("$(secs "$BIN" get one out.bin)")
  cmp one.bin out.bin
  rm -f out.bin cp-dst.bin
  sync
  cpput_t+=("$(secs cp stored.bin cp-dst.bin)")
  rm -f cp-dst.bin; sync
  # Outlast fsyncs every blob before it acknowledges a put; so does this cp.
  cpsync_t+=("$(secs dd if=stored.bin of=cp-dst.bin bs=4M conv=fsync status=none)")
  rm -f cp-dst.bin; sync
  cpget_t+=("$(secs cp one.bin cp-dst.bin)")
  rm -rf rc; mkdir rc; sync
  t0=$(now); for i in 1 2 3 4 5 6; do rclone copy --no-check-dest one.bin "rc/d$i" 2>/dev/null; done; rclone_t+=("$(echo "$(now) - $t0" | bc -l)")
done
P=$(printf '%s\n' "${put_t[@]}" | median); G=$(printf '%s\n' "${get_t[@]}" | median)
CP=$(printf '%s\n' "${cpput_t[@]}" | median); CG=$(printf '%s\n' "${cpget_t[@]}" | median)
RC=$(printf '%s\n' "${rclone_t[@]}" | median); CS=$(printf '%s\n' "${cpsync_t[@]}" | median)
mbps() { echo "scale=0; 1024 / $1" | bc -l; }
samples() { printf '%.2f ' "$@"; }
echo "samples: put $(samples "${put_t[@]}")| get $(samples "${get_t[@]}")| cp $(samples "${cpput_t[@]}")| cp+fsync $(samples "${cpsync_t[@]}")| cp 1 GiB $(samples "${cpget_t[@]}")"
echo "1 GiB, 4-of-6 on local folders (medians of 3; page cache warm)"
printf 'outlast put          %6.2f s  %5s MiB/s\n' "$P" "$(mbps "$P")"
printf 'cp 1.5 GiB (stored)  %6.2f s  -> put/cp speed ratio %.2fx\n' "$CP" "$(echo "$CP / $P" | bc -l)"
printf 'cp 1.5 GiB + fsync   %6.2f s  -> put/(cp+fsync) speed ratio %.2fx\n' "$CS" "$(echo "$CS / $P" | bc -l)"
printf 'rclone copy x6       %6.2f s  -> put/rclone speed ratio %.2fx\n' "$RC" "$(echo "$RC / $P" | bc -l)"
printf 'outlast get          %6.2f s  %5s MiB/s\n' "$G" "$(mbps "$G")"
printf 'cp 1 GiB             %6.2f s  -> get/cp speed ratio %.2fx\n' "$CG" "$(echo "$CG / $G" | bc -l)"
if [ -n "$BASE" ]; then
  BP=$(printf '%s\n' "${bput_t[@]}" | median); BG=$(printf '%s\n' "${bget_t[@]}" | median)
  echo "baseline samples: put $(samples "${bput_t[@]}")| get $(samples "${bget_t[@]}")"
  printf 'baseline put         %6.2f s  -> new/baseline speed ratio %.2fx\n' "$BP" "$(echo "$BP / $P" | bc -l)"
  printf 'baseline get         %6.2f s  -> new/baseline speed ratio %.2fx\n' "$BG" "$(echo "$BG / $G" | bc -l)"
fi

rm -f stored.bin out.bin cp-dst.bin; rm -rf rc
head -c 4G /dev/urandom >four.bin
rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
PR=$(rss "$BIN" put four.bin four)
GR=$(rss "$BIN" get four four-out.bin)
cmp four.bin four-out.bin
PR1=$(rss "$BIN" put one.bin one)
echo "peak RSS: put 4 GiB $((PR / 1024)) MiB, get 4 GiB $((GR / 1024)) MiB, put 1 GiB $((PR1 / 1024)) MiB"
