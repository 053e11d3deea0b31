#!/usr/bin/env bash
# Load and churn: 32 concurrent readers (grep -r, find, cat) across 20 containers while
# containers are restarted or removed and recreated every few hundred milliseconds. Reports
# reader commands run, errors by kind, hangs, ctrfsd's peak RSS and fds, the FUSE requests
# ctrfsd answered and the errors it answered by errno, and checks that ctrfsd serves normally
# afterwards. Run as root:
#   sudo scripts/stress.sh            # 60 s
#   DURATION=20 sudo scripts/stress.sh
# Exit status 1 if any reader hung (30 s), failed with an error other than "No such file or
# directory" (a container really gone) or "Stale file handle" (a file of a container instance
# replaced while the reader was inside it), or ctrfsd stopped serving.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-60}
N=20
READERS=32
IMAGE=ctrfsd-stress:1
WORK=/run/ctrfsd-stress
MNT=$WORK/mnt
[ "$(id -u)" = 0 ] || { echo "stress.sh: run as root" >&2; exit 1; }
scripts/setup.sh >/dev/null
cargo build --release --locked -q
mkdir -p "$MNT" "$WORK/out"
rm -f "$WORK"/out/*

if ! docker image inspect $IMAGE >/dev/null 2>&1; then
  t=$(mktemp -d)
  mkdir -p "$t/bin" "$t/proc" "$t/sys" "$t/dev" "$t/etc"
  cp /bin/busybox "$t/bin/busybox"; ln -s busybox "$t/bin/sh"; ln -s busybox "$t/bin/sleep"
  for d in $(seq 0 19); do
    mkdir -p "$t/data/d$d"
    for f in $(seq 0 49); do echo "line $d $f needle" > "$t/data/d$d/f$f"; done
  done
  ln -s /etc "$t/data/etc-link"
  tar -C "$t" -cf - . | docker import - $IMAGE >/dev/null
  rm -rf "$t"
fi
run() { docker run -d --network none --name "ctrfsd-stress-$1" $IMAGE /bin/sleep 1000000000 >/dev/null; }
for i in $(seq 0 $((N - 1))); do docker rm -f "ctrfsd-stress-$i" >/dev/null 2>&1 || true; run "$i"; done

mountpoint -q "$MNT" && umount -l "$MNT"
target/release/ctrfsd --log-level warn "$MNT" 2>"$WORK/ctrfsd.log" &
DPID=$!
trap 'kill -TERM $DPID 2>/dev/null; wait $DPID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ "$(ls "$MNT" | grep -c ctrfsd-stress-)" -ge $N ] && break; sleep 0.1; done

END=$(( $(date +%s) + DURATION ))
churn() { # restart, or remove and recreate, a random container every ~300 ms
  local n=0
  while [ "$(date +%s)" -lt $END ]; do
    i=$((RANDOM % N))
    if ((RANDOM % 2)); then docker restart -t 0 "ctrfsd-stress-$i" >/dev/null 2>&1 || true
    else docker rm -f "ctrfsd-stress-$i" >/dev/null 2>&1 || true; run "$i" 2>/dev/null || true; fi
    n=$((n + 1)); sleep 0.3
  done
  echo "$n" > "$WORK/out/churn.$1"
}
reader() { # one line per command: exit status and the first error message
  local out=$WORK/out/reader.$1
  while [ "$(date +%s)" -lt $END ]; do
    c=$MNT/ctrfsd-stress-$((RANDOM % N))
    case $((RANDOM % 3)) in
      0) cmd="grep -r -c needle $c/data" ;;
      1) cmd="find $c/data" ;;
      2) cmd="cat $c/data/d$((RANDOM % 20))/f$((RANDOM % 50))" ;;
    esac
    err=$(timeout 30 $cmd 2>&1 >/dev/null | head -1) && rc=0 || rc=$?
    [ "$rc" = 124 ] && err="HANG: $cmd"
    echo "$rc|$err" >> "$out"
  done
}
sample() {
  local rss=0 fds=0
  while kill -0 $DPID 2>/dev/null && [ "$(date +%s)" -lt $END ]; do
    r=$(awk '/VmRSS/{print $2}' /proc/$DPID/status); f=$(ls /proc/$DPID/fd | wc -l)
    ((r > rss)) && rss=$r; ((f > fds)) && fds=$f
    sleep 0.5
  done
  echo "$rss $fds" > "$WORK/out/peak"
}
echo "stress: $READERS readers on $N containers with churn, ${DURATION}s"
churn a & churn b & sample &
for r in $(seq 1 $READERS); do reader "$r" & done
wait $(jobs -p | grep -v "^$DPID$") 2>/dev/null || true

cat "$WORK"/out/reader.* > "$WORK/out/all"
total=$(wc -l < "$WORK/out/all")
ok=$(grep -c '^0|' "$WORK/out/all" || true)
hangs=$(grep -c 'HANG' "$WORK/out/all" || true)
read -r rss fds < "$WORK/out/peak"
echo
echo "| figure | value |"
echo "|---|---|"
echo "| reader commands | $total |"
echo "| succeeded | $ok |"
echo "| container restarts/recreations | $(( $(cat "$WORK"/out/churn.a) + $(cat "$WORK"/out/churn.b) )) |"
grep -v '^0|' "$WORK/out/all" | sed -E 's/^[0-9]+\|//; s/.*: //' | sort | uniq -c | sort -rn |
  while read -r n kind; do echo "| errors: ${kind:-exit status only} | $n |"; done
echo "| hangs (30 s) | $hangs |"
echo "| ctrfsd peak RSS | $((rss / 1024)) MiB |"
echo "| ctrfsd peak fds | $fds |"
# What ctrfsd itself answered (the mount root's request counters).
getfattr --only-values -n user.ctrfsd.requests "$MNT" 2>/dev/null |
  while read -r k v rest; do
    if [ "$k" = error ]; then echo "| ctrfsd answered $v | $rest |"; else echo "| ctrfsd requests: $k | $v |"; fi
  done

# Afterwards ctrfsd serves normally: a fresh container appears and reads.
docker rm -f ctrfsd-stress-after >/dev/null 2>&1 || true
docker run -d --network none --name ctrfsd-stress-after $IMAGE /bin/sleep 1000000000 >/dev/null
for _ in $(seq 1 50); do [ -r "$MNT/ctrfsd-stress-after/data/d0/f0" ] && break; sleep 0.1; done
after=$(cat "$MNT/ctrfsd-stress-after/data/d0/f0" 2>&1 || true)
docker rm -f ctrfsd-stress-after >/dev/null
echo "| serving afterwards | $([ "$after" = "line 0 0 needle" ] && echo yes || echo "NO: $after") |"
for i in $(seq 0 $((N - 1))); do docker rm -f "ctrfsd-stress-$i" >/dev/null 2>&1 || true; done

gone=$(grep -c 'No such file or directory' "$WORK/out/all" || true)
# "Stale file handle" is ctrfsd's documented answer for a file of a container instance that
# another instance replaced (restart, recreate) while a reader was inside it.
replaced=$(grep -c 'Stale file handle' "$WORK/out/all" || true)
# Lines with a status but no message are grep -c finding no match (exit 1): not errors.
bad_msgs=$(grep -v '^0|' "$WORK/out/all" | grep -v -e 'No such file or directory' -e 'Stale file handle' | grep -v -c '^[0-9]*|$' || true)
if [ "$hangs" != 0 ] || [ "$bad_msgs" != 0 ] || [ "$after" != "line 0 0 needle" ]; then
  echo "stress: FAILED ($hangs hangs, $bad_msgs unexpected errors; see $WORK/out)" >&2
  exit 1
fi
echo "stress: ok ($gone commands ended on containers that were gone, $replaced on ones replaced mid-walk)"
