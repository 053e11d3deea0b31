#!/usr/bin/env bash
# Benchmarks ctrfsd against the kernel's own view, /proc/<pid>/root, on the same files in the
# same run, and prints one table of medians and ratios (ctrfsd / direct). Run as root:
#   sudo scripts/bench.sh            # the workloads of issue #3
#   sudo scripts/bench.sh --scale    # also: walk 1,000,000 files under RLIMIT_NOFILE 1024, RSS,
#                                    # and list one directory of 1,000,000 entries
#   sudo scripts/bench.sh --scale-only   # only the two scale checks
#   sudo scripts/bench.sh --first-dirs   # only the first-look directory rows (see the block
#                                        # "First look: directories" below)
# The grep is also run on the same tree on a Docker volume (rows 8-9: the volume's fds are
# closed after 1 s idle, so the second runs each grep after they were).
# Env: ROUNDS (default 5) x RUNS (default 3) timed runs per command, MANY (containers for the
# `ls` row, default 200; 0 skips the row), CTRFSD_ARGS (extra ctrfsd options, e.g.
# `--passthrough` or `--cache-ttl 1` to measure the other modes), BINDFS=0 (no bindfs column),
# CTRFSD_BIN (a ctrfsd binary to measure instead of building this tree's, e.g. an older
# build for a paired comparison), BENCH_WORK (work directory, default /run/ctrfsd-bench).
# Each round runs direct, ctrfsd and bindfs one after the other (hyperfine, one warmup each),
# and the medians are over all rounds: a machine that drifts (this VM's page cache is trimmed
# by DAMON every few seconds, and its neighbours vary) then weighs on every column alike
# instead of on whichever ran last.
# Containers and images are reused between runs (names ctrfsd-bench-*); `scripts/bench.sh
# --clean` removes them.
# ROWS (default: all) runs only the rows named, e.g. ROWS="first_grep cold seq" to iterate on a
# few: grep stat first_find seq rand cold first_grep vol idle par ls logs (the --scale checks are
# chosen by the argument, as above).
# First-look rows (first_grep, first_find, and the 1,000,000-entry rows of --scale and
# --first-dirs): before every run (the warmup too) hyperfine's --prepare runs
# $BENCH_WORK/fresh-mount.sh, which stops the ctrfsd it started last and mounts a fresh one on
# $BENCH_WORK/first (`--runtime none --container NAME=PID`, plus CTRFSD_ARGS) and returns once the
# container is served: each timed command is the first look of a new mount, the kernel holds no
# inode, entry, attribute or page of it. The direct command gets the same --prepare (it does not
# touch the direct side) and its runs keep the container's own files in the page cache: only
# ctrfsd's own cost of a first look shows.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-3}
MANY=${MANY:-200}
IMAGE=ctrfsd-bench:1
WORK=${BENCH_WORK:-/run/ctrfsd-bench}
MNT=$WORK/mnt
BINDMNT=$WORK/bindfs
OUT=$WORK/results
SCALE=0
SCALE_ONLY=0
ROWS=${ROWS:-grep stat seq rand cold first_grep first_find vol idle par ls logs}
want() { case " $ROWS " in *" $1 "*) return 0 ;; esac; return 1; }
FIRST_DIRS_ONLY=0
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root" >&2; exit 1; }
case "${1:-}" in
  --scale) SCALE=1 ;;
  --scale-only) SCALE=1 SCALE_ONLY=1 ;;
  --first-dirs) SCALE=1 SCALE_ONLY=1 FIRST_DIRS_ONLY=1 ;;
  --clean) docker ps -aq --filter name=ctrfsd-bench- | xargs -r docker rm -f >/dev/null
           docker volume rm -f ctrfsd-bench-vol >/dev/null 2>&1 || true
           docker rmi -f $IMAGE >/dev/null 2>&1 || true; exit 0 ;;
  "") ;;
  *) echo "bench.sh: unknown argument $1 (expected --scale, --scale-only, --first-dirs or --clean)" >&2; exit 2 ;;
esac

scripts/setup.sh
for pair in hyperfine:hyperfine fio:fio bindfs:bindfs; do
  command -v "${pair%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair##*:}" >/dev/null 2>&1
done
if [ -n "${CTRFSD_BIN:-}" ]; then BIN=$CTRFSD_BIN; else
  cargo build --release --locked -q
  BIN=$PWD/target/release/ctrfsd
fi
mkdir -p "$WORK" "$MNT" "$BINDMNT" "$OUT"

# A tree like real log directories: 100 folders x 300 files of 1-6 KiB; one line in 7 says ERROR.
make_tree() { python3 - "$1" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(7)
for d in range(100):
    p = os.path.join(root, f"svc{d:03}")
    os.makedirs(p, exist_ok=True)
    for f in range(300):
        lines = []
        for i in range(random.randint(20, 120)):
            lvl = "ERROR" if random.random() < 1/7 else "INFO"
            lines.append(f"2026-11-22T07:{i%60:02}:00Z {lvl} request {d}-{f}-{i} handled in {random.randint(1,999)}ms")
        with open(os.path.join(p, f"app-{f:03}.log"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
PY
}

if ! docker image inspect $IMAGE >/dev/null 2>&1; then
  echo "bench: building image $IMAGE (busybox + a 30k-file tree in an image layer)"
  t=$(mktemp -d)
  mkdir -p "$t/bin" "$t/proc" "$t/sys" "$t/dev" "$t/etc"
  cp /bin/busybox "$t/bin/busybox"; ln -s busybox "$t/bin/sh"; ln -s busybox "$t/bin/sleep"
  make_tree "$t/data"
  tar -C "$t" -cf - . | docker import - $IMAGE >/dev/null
  rm -rf "$t"
fi

ensure() { # name -> pid of a running container from the bench image
  local n=$1
  if [ "$(docker inspect -f '{{.State.Running}}' "$n" 2>/dev/null)" != true ]; then
    docker rm -f "$n" >/dev/null 2>&1 || true
    docker run -d --network none --name "$n" $IMAGE /bin/sleep 1000000000 >/dev/null
  fi
  docker inspect -f '{{.State.Pid}}' "$n"
}

MAIN=ctrfsd-bench-main
PID=$(ensure $MAIN)
if [ ! -e /proc/$PID/root/wdata/.complete ]; then
  echo "bench: writing the 30k-file tree and a 1 GiB file into $MAIN's writable layer"
  make_tree /proc/$PID/root/wdata
  dd if=/dev/urandom of=/proc/$PID/root/wdata/big bs=1M count=1024 status=none
  touch /proc/$PID/root/wdata/.complete
fi
# The same tree on a Docker volume (a mount of its own in the container): there ctrfsd closes
# its cached fds after 1 s idle, so that the volume can be unmounted (README, security model).
VOL=ctrfsd-bench-vol
if [ $SCALE_ONLY = 0 ] && { want vol || want idle; }; then
  if [ "$(docker inspect -f '{{.State.Running}}' $VOL 2>/dev/null)" != true ]; then
    docker rm -f $VOL >/dev/null 2>&1 || true
    docker run -d --network none --name $VOL -v $VOL:/vdata $IMAGE /bin/sleep 1000000000 >/dev/null
  fi
  VPID=$(docker inspect -f '{{.State.Pid}}' $VOL)
  if [ ! -e /proc/$VPID/root/vdata/.complete ]; then
    echo "bench: writing the 30k-file tree into $VOL's volume"
    make_tree /proc/$VPID/root/vdata
    touch /proc/$VPID/root/vdata/.complete
  fi
fi
PAR_PIDS=()
if want par; then
  for i in 0 1 2 3 4 5 6 7; do PAR_PIDS+=("$(ensure ctrfsd-bench-p$i)"); done
fi
if [ "$MANY" -gt 0 ] && [ $SCALE_ONLY = 0 ] && want ls; then
  have=$(docker ps -q --filter name=ctrfsd-bench-n | wc -l)
  if [ "$have" -lt "$MANY" ]; then
    echo "bench: starting $MANY idle containers for the listing row (once; reused later)"
    for i in $(seq 0 $((MANY - 1))); do ensure ctrfsd-bench-n$i >/dev/null; done
  fi
fi

# The daemon runs detached, its pid in $PIDFILE, so that remount.sh (run by hyperfine before
# each timed run of a first-walk row) can replace it.
PIDFILE=$WORK/ctrfsd.pid
REMOUNT=$WORK/remount.sh
cat > "$REMOUNT" <<EOF
#!/bin/sh
# Written by scripts/bench.sh: stops the ctrfsd of $PIDFILE and mounts $MNT afresh.
p=\$(cat "$PIDFILE" 2>/dev/null)
if [ -n "\$p" ] && kill -TERM "\$p" 2>/dev/null; then
  while kill -0 "\$p" 2>/dev/null; do sleep 0.02; done
fi
mountpoint -q "$MNT" && umount -l "$MNT"
setsid "$BIN" --log-level warn ${CTRFSD_ARGS:-} "$MNT" </dev/null >/dev/null 2>>"$WORK/ctrfsd.log" &
echo \$! > "$PIDFILE"
for _ in \$(seq 1 1500); do [ -d "$MNT/$MAIN/wdata" ] && exit 0; sleep 0.02; done
echo "remount.sh: ctrfsd did not serve $MAIN" >&2; exit 1
EOF
chmod +x "$REMOUNT"
cleanup() {
  local p; p=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; then
    while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
  fi
  rm -f "$PIDFILE"
  [ -s "$WORK/fresh-mount.pid" ] && kill -TERM "$(cat "$WORK/fresh-mount.pid")" 2>/dev/null || true  # First look
  [ -s "$WORK/floor.pid" ] && kill -TERM "$(cat "$WORK/floor.pid")" 2>/dev/null && umount -l "$WORK/floor" 2>/dev/null || true  # Floor
  mountpoint -q "$BINDMNT" && umount -l "$BINDMNT" || true
}
trap cleanup EXIT
: > "$WORK/ctrfsd.log"
"$REMOUNT" || { cat "$WORK/ctrfsd.log" >&2; exit 1; }
DPID=$(cat "$PIDFILE")
HAVE_BINDFS=0
if [ "${BINDFS:-1}" != 0 ] && command -v bindfs >/dev/null && bindfs -o ro "/proc/$PID/root" "$BINDMNT" 2>/dev/null; then HAVE_BINDFS=1; fi

D=/proc/$PID/root/wdata C=$MNT/$MAIN/wdata B=$BINDMNT/wdata
drop='sync; echo 3 > /proc/sys/vm/drop_caches'
rm -f "$OUT"/*.json "$OUT"/*.label
bench() { # id, label, command template with {} for the tree root, extra hyperfine args...
  local id=$1 label=$2 tmpl=$3; shift 3
  local cmds=("${tmpl//\{\}/$D}" "${tmpl//\{\}/$C}")
  [ $HAVE_BINDFS = 1 ] && cmds+=("${tmpl//\{\}/$B}")
  echo "bench: $label"
  for r in $(seq 1 "$ROUNDS"); do
    hyperfine -N --style none --runs "$RUNS" "$@" --export-json "$OUT/$id.r$r.json" "${cmds[@]}" >/dev/null
  done
  echo "$label" > "$OUT/$id.label"
}
# ---- First look: directories (issue #16, directory rows; README "First look: directories") ----
# Fresh-mount rows: before every timed run (and the warmup) hyperfine's --prepare runs
# $WORK/fresh-mount.sh, which stops the ctrfsd it started last and mounts a new one on
# $WORK/first (--runtime none --container NAME=PID, plus CTRFSD_ARGS), so each timed command is
# the first look of a new mount: the kernel holds no inode, entry or listing of it. The
# container's own files stay in the page cache (the direct command runs under the same
# prepare, untimed). FIRST_RUNS (default RUNS x ROUNDS, 3 for the 1,000,000-entry rows)
# timed runs per command.
FMNT=$WORK/first
fresh_mount_setup() { # name=pid [prlimit args] -> writes the helper and its settings
  mkdir -p "$FMNT"
  cat > "$WORK/fresh-mount.env" <<ENV
BIN='$BIN'; FMNT='$FMNT'; FARGS='--runtime none --container $1 ${CTRFSD_ARGS:-}'
FWAIT='$FMNT/${1%%=*}/.'; FPIDF='$WORK/fresh-mount.pid'; FLOG='$WORK/ctrfsd-first.log'
PRE='${2:-}'
ENV
  cat > "$WORK/fresh-mount.sh" <<'SH'
#!/bin/sh
# Stops the ctrfsd this helper started last (by its pid file) and mounts a fresh one.
set -e
. "$(dirname "$0")/fresh-mount.env"
if [ -s "$FPIDF" ]; then
  p=$(cat "$FPIDF"); : > "$FPIDF"
  kill -TERM "$p" 2>/dev/null || true
  while kill -0 "$p" 2>/dev/null; do sleep 0.02; done
fi
mountpoint -q "$FMNT" && umount -l "$FMNT"
setsid $PRE "$BIN" --log-level warn $FARGS "$FMNT" </dev/null >/dev/null 2>>"$FLOG" &
echo $! > "$FPIDF"
i=0; until [ -d "$FWAIT" ]; do i=$((i+1)); [ $i -lt 400 ] || exit 1; sleep 0.05; done
SH
  chmod +x "$WORK/fresh-mount.sh"
}
fresh_mount_stop() {
  [ -s "$WORK/fresh-mount.pid" ] || return 0
  local p; p=$(cat "$WORK/fresh-mount.pid"); : > "$WORK/fresh-mount.pid"
  kill -TERM "$p" 2>/dev/null || true
  while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
}
first_bench() { # id, label, template with {}, direct dir, the same through ctrfsd, runs[, warm]
  local id=$1 label=$2 tmpl=$3 ddir=$4 cdir=$5 runs=$6 prep=$WORK/fresh-mount.sh
  # ---- First grep / first find (issue #16, README "First grep and first find") ----
  # warm: a command run after each fresh mount, before each timed run (both columns): the
  # direct walk once more, so that the container's files (and dentries) are in the page cache
  # whatever other processes on the machine dropped meanwhile (`drop_caches` of a cold row).
  if [ -n "${7:-}" ]; then
    printf '#!/bin/sh\n"%s" && %s\n' "$WORK/fresh-mount.sh" "$7" > "$WORK/fresh-warm-$id.sh"
    chmod +x "$WORK/fresh-warm-$id.sh"; prep=$WORK/fresh-warm-$id.sh
  fi
  # ---- end of "First grep / first find" ----
  echo "bench: $label (a fresh mount before each run)"
  hyperfine -N --style none --runs "$runs" --warmup 1 --prepare "$prep" \
    --export-json "$OUT/$id.r1.json" "${tmpl//\{\}/$ddir}" "${tmpl//\{\}/$cdir}" >/dev/null
  echo "$label" > "$OUT/$id.label"
}
# First `find -printf %s%m%u` of the 30k-file lab tree after mounting.
first_dirs_find() {
  fresh_mount_setup "$MAIN=$PID"
  first_bench f1find "first find -printf %s%m%u after mount, 30k files" \
    "sh -c 'find {} -printf %s%m%u >/dev/null'" "/proc/$PID/root/wdata" "$FMNT/$MAIN/wdata" \
    "${FIRST_RUNS:-$((RUNS * ROUNDS))}" "find /proc/$PID/root/wdata -printf %s%m%u >/dev/null"
  fresh_mount_stop
}
# First `ls -f` and first `ls -l` of one directory of 1,000,000 entries after mounting,
# under RLIMIT_NOFILE 1024 as the scale checks.
first_dirs_big() { # scale container name, pid
  fresh_mount_setup "$1=$2" "prlimit --nofile=1024:1024"
  first_bench f2lsf "first ls -f, one directory of 1,000,000 entries" \
    "sh -c 'ls -f {} >/dev/null'" "/proc/$2/root/w" "$FMNT/$1/w" "${FIRST_RUNS:-3}"
  first_bench f3lsl "first ls -l, the same directory" \
    "sh -c 'ls -l {} >/dev/null'" "/proc/$2/root/w" "$FMNT/$1/w" "${FIRST_RUNS:-3}"
  fresh_mount_stop
}
first_dirs_table() {
  python3 - "$OUT" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
print("| first look (fresh mount each run) | direct /proc/<pid>/root | ctrfsd | ratio |")
print("|---|---|---|---|")
for lf in sorted(x for x in os.listdir(out) if x.startswith("f") and x.endswith(".label")):
    rid = lf[:-6]
    r = json.load(open(os.path.join(out, rid + ".r1.json")))["results"]
    d, c = (statistics.median(x["times"]) for x in r)
    print(f"| {open(os.path.join(out, lf)).read().strip()} | {d*1000:.1f} ms | {c*1000:.1f} ms | {c/d:.2f} |")
PY
}
# ---- end of "First look: directories" ----

if [ $SCALE_ONLY = 0 ]; then
# The grep rows leave out the 1 GiB file beside the tree (`big`, read by the seq, rand and
# first_big rows): they measure the 30,000 small files their labels name, the issue's lab tree.
want grep && bench 1grep "grep -r -c ERROR, 30k files, warm" "sh -c 'grep -r -c ERROR --exclude=big {} >/dev/null'" --warmup 1
want stat && bench 2stat "stat every file (find -printf %s%m%u), warm" "sh -c 'find {} -printf %s%m%u >/dev/null'" --warmup 1
want first_find && first_dirs_find  # First look: directories
# Read requests ctrfsd got during the seq row (issue #16): 1,024 fill the 1 GiB file once (the
# warmup); more mean its page cache was dropped between runs and read again through ctrfsd.
ctrfsd_reads() { getfattr --only-values -n user.ctrfsd.requests "$MNT" 2>/dev/null |
  awk '{for (i = 1; i < NF; i++) if ($i == "read") n = $(i + 1)} END {print n + 0}'; }
want seq && r_seq0=$(ctrfsd_reads)
want seq && bench 3seq "sequential read 1 GiB (dd bs=1M), warm" "sh -c 'dd if={}/big of=/dev/null bs=1M status=none'" --warmup 1
want seq && echo "bench: read requests to ctrfsd during the seq row: $(( $(ctrfsd_reads) - r_seq0 ))"
# ---- Warm sequential read: the floor of a FUSE page cache (issue #16; README "First look: reads") ----
# Row seq_fuse (only when named in ROWS, e.g. ROWS="seq seq_fuse"): the same warm `dd` through a
# FUSE filesystem that is not ctrfsd (bindfs -o kernel_cache: libfuse, its page cache kept
# across opens, as ctrfsd's no-open mode keeps it) against the direct view; then the folio sizes of the 1 GiB file's page cache on each side
# (scripts/folios.py), which decide the seq row: Linux 6.18 fills a FUSE file's page cache with
# 4 KiB folios only, the container's ext4/overlayfs file gets folios of up to 2 MiB.
if want seq_fuse && command -v bindfs >/dev/null; then
  FUSEFLOOR=$WORK/fusefloor; mkdir -p "$FUSEFLOOR"
  if bindfs -o ro,kernel_cache "/proc/$PID/root" "$FUSEFLOOR"; then
    (C=$FUSEFLOOR/wdata HAVE_BINDFS=0
     bench 3seqfuse "the same through bindfs -o kernel_cache (a libfuse filesystem, not ctrfsd)" \
       "sh -c 'dd if={}/big of=/dev/null bs=1M status=none'" --warmup 1
     echo "bench: folios of the warm 1 GiB file's page cache (direct, ctrfsd, bindfs):"
     scripts/folios.py "$D/big" "$MNT/$MAIN/wdata/big" "$C/big" | sed 's/^/bench:   /')
    umount "$FUSEFLOOR" || umount -l "$FUSEFLOOR"
  fi
fi
# ---- end of "Warm sequential read: the floor" ----
# ---- Warm sequential read, caches refilled (issue #16; README "The floor of a /dev/fuse filesystem") ----
# Row seq_full (only when named in ROWS): the seq row with each timed run preceded by an untimed
# read of the file through every column, so each timed `dd` finds its page cache whole: other
# processes' drop_caches and DAMON's trimming otherwise make some "warm" runs read the file
# again (through ctrfsd, by read requests, printed for both rows).
if want seq_full; then
  r0=$(ctrfsd_reads)
  bench 3seqfull "sequential read 1 GiB (dd bs=1M), warm, page caches refilled before each run" \
    "sh -c 'dd if={}/big of=/dev/null bs=1M status=none'" --warmup 1 \
    --prepare "sh -c 'cat $D/big $C/big $([ $HAVE_BINDFS = 1 ] && echo "$B/big") >/dev/null'"
  echo "bench: read requests to ctrfsd during the seq_full row (prepares included): $(( $(ctrfsd_reads) - r0 ))"
fi
# ---- end of "Warm sequential read, caches refilled" ----
want rand && bench 4rand "4 KiB random reads (fio randread, 64 MiB), warm" \
  "sh -c 'fio --name=r --filename={}/big --rw=randread --bs=4k --size=1g --io_size=64m --invalidate=0 --ioengine=psync --output=/dev/null'" --warmup 1
want cold && bench 5cold "grep -r -c ERROR, 30k files, cold (drop_caches)" "sh -c 'grep -r -c ERROR --exclude=big {} >/dev/null'" --prepare "sh -c '$drop'"
# First walk after mounting: a fresh mount before each run (fresh_mount_setup above; the
# direct command's runs keep the container's files in the page cache).
if want first_grep; then
  fresh_mount_setup "$MAIN=$PID"
  first_bench f0grep "first grep -r -c ERROR after mounting, 30k files, page cache warm" \
    "sh -c 'grep -r -c ERROR --exclude=big {} >/dev/null'" "$D" "$FMNT/$MAIN/wdata" "$((RUNS * ROUNDS))" \
    "grep -r -c ERROR --exclude=big $D >/dev/null"
  first_bench f0big "first sequential read of the 1 GiB file after mounting (dd bs=1M), page cache warm" \
    "sh -c 'dd if={}/big of=/dev/null bs=1M status=none'" "$D" "$FMNT/$MAIN/wdata" "$((RUNS * ROUNDS))"
  fresh_mount_stop
fi
# ---- Floor: a minimal FUSE server beside ctrfsd (issue #16; README "First look: reads") ----
# FLOOR=1 adds, for each of the rows first_grep, first_find, seq and cold named in ROWS, the same
# row through examples/floorfs.rs ("floorfs: ..." rows, against direct in the same hyperfine):
# a FUSE server with ctrfsd's INIT flags, mount options, TTLs and readahead but none of its own
# work (no containment, checks, deadlines, watches or store-ahead), serving /proc/<pid>/root.
# FLOOR_ARGS: its extra arguments (e.g. `--passthrough-min 1048576`: opens answered, kernel
# passthrough for files of at least 1 MiB; then also the warm grep row is run through it).
# First-look rows mount it afresh before each run, the direct walk run after, as for ctrfsd.
if [ "${FLOOR:-0}" = 1 ]; then
  cargo build --release --locked -q --example floorfs
  FLBIN=$PWD/target/release/examples/floorfs FLMNT=$WORK/floor FLPID=$WORK/floor.pid
  mkdir -p "$FLMNT"
  cat > "$WORK/floor-mount.sh" <<SH
#!/bin/sh
# Written by scripts/bench.sh: stops the floorfs of $FLPID and mounts $FLMNT afresh.
p=\$(cat "$FLPID" 2>/dev/null)
if [ -n "\$p" ] && kill -TERM "\$p" 2>/dev/null; then
  while kill -0 "\$p" 2>/dev/null; do sleep 0.02; done
fi
umount -l "$FLMNT" 2>/dev/null
setsid "$FLBIN" /proc/$PID/root "$FLMNT" ${FLOOR_ARGS:-} </dev/null >/dev/null 2>>"$WORK/floorfs.log" &
echo \$! > "$FLPID"
i=0; until [ -d "$FLMNT/wdata" ]; do i=\$((i+1)); [ \$i -lt 400 ] || exit 1; sleep 0.02; done
SH
  chmod +x "$WORK/floor-mount.sh"
  floor_first() { # id, label, template, warm command
    printf '#!/bin/sh\n"%s" && %s\n' "$WORK/floor-mount.sh" "$4" > "$WORK/floor-warm-$1.sh"
    chmod +x "$WORK/floor-warm-$1.sh"
    echo "bench: floorfs: $2 (a fresh mount before each run)"
    hyperfine -N --style none --runs "$((RUNS * ROUNDS))" --warmup 1 --prepare "$WORK/floor-warm-$1.sh" \
      --export-json "$OUT/$1.r1.json" "${3//\{\}/$D}" "${3//\{\}/$FLMNT/wdata}" >/dev/null
    echo "floorfs: $2" > "$OUT/$1.label"
  }
  want first_grep && floor_first f0grepfloor "first grep -r -c ERROR after mounting, 30k files, page cache warm" \
    "sh -c 'grep -r -c ERROR --exclude=big {} >/dev/null'" "grep -r -c ERROR --exclude=big $D >/dev/null"
  want first_find && floor_first f1findfloor "first find -printf %s%m%u after mounting, 30k files" \
    "sh -c 'find {} -printf %s%m%u >/dev/null'" "find $D -printf %s%m%u >/dev/null"
  "$WORK/floor-mount.sh"
  (C=$FLMNT/wdata HAVE_BINDFS=0
   case " ${FLOOR_ARGS:-} " in *" --passthrough-min "*)
     bench 1grepfloor "floorfs: grep -r -c ERROR, 30k files, warm" "sh -c 'grep -r -c ERROR --exclude=big {} >/dev/null'" --warmup 1 ;;
   esac
   if want seq; then
     bench 3seqfloor "floorfs: sequential read 1 GiB (dd bs=1M), warm" "sh -c 'dd if={}/big of=/dev/null bs=1M status=none'" --warmup 1
     echo "bench: folios of the warm 1 GiB file's page cache (direct, ctrfsd, floorfs):"
     scripts/folios.py "$D/big" "$MNT/$MAIN/wdata/big" "$C/big" | sed 's/^/bench:   /'
   fi
   if want cold; then
     bench 5coldfloor "floorfs: grep -r -c ERROR, 30k files, cold (drop_caches)" "sh -c 'grep -r -c ERROR --exclude=big {} >/dev/null'" --prepare "sh -c '$drop'"
   fi)
  p=$(cat "$FLPID"); kill -TERM "$p" 2>/dev/null || true; while kill -0 "$p" 2>/dev/null; do sleep 0.02; done
  umount -l "$FLMNT" 2>/dev/null || true; : > "$FLPID"
fi
# ---- end of "Floor" ----
# On a volume: warm, and warm after 2 s idle (every cached fd on the volume closed since).
if want vol || want idle; then
(D=/proc/$VPID/root/vdata C=$MNT/$VOL/vdata HAVE_BINDFS=0
 if want vol; then bench 8vol "grep -r -c ERROR, 30k files on a volume, warm" "sh -c 'grep -r -c ERROR {} >/dev/null'" --warmup 1; fi
 if want idle; then bench 9idle "the same after 2 s idle (fds on the volume closed)" "sh -c 'grep -r -c ERROR {} >/dev/null'" \
   --warmup 1 --prepare "sleep 2"; fi)
fi
if want par; then
par_direct="" par_ctrfsd=""
for i in 0 1 2 3 4 5 6 7; do
  par_direct+="grep -r -c ERROR /proc/${PAR_PIDS[$i]}/root/data >/dev/null & "
  par_ctrfsd+="grep -r -c ERROR $MNT/ctrfsd-bench-p$i/data >/dev/null & "
done
echo "bench: 8 greps in parallel on 8 containers"
for r in $(seq 1 "$ROUNDS"); do
  hyperfine --style none --runs "$RUNS" --warmup 1 --export-json "$OUT/6par.r$r.json" \
    "sh -c '${par_direct}wait'" "sh -c '${par_ctrfsd}wait'" >/dev/null
done
echo "8 greps in parallel on 8 containers, wall" > "$OUT/6par.label"
fi
if [ "$MANY" -gt 0 ] && want ls; then
  n=$(ls "$MNT" | wc -l)
  echo "bench: ls with $n containers"
  hyperfine -N --style none --runs 30 --warmup 3 --export-json "$OUT/7ls.r1.json" "ls $MNT" >/dev/null
  echo "ls /ctr with $n running containers (absolute)" > "$OUT/7ls.label"
fi

# Logs (README, "Logs"): grep -c ERROR over one container's ~100 MiB json-file log, on the
# raw JSON file, through /ctr/.logs, and through `docker logs`. The log is written once by a
# container that stays up (its name is reused between runs).
LOGC=ctrfsd-bench-log
if want logs; then
if [ "$(docker inspect -f '{{.State.Running}}' $LOGC 2>/dev/null)" != true ]; then
  docker rm -f $LOGC >/dev/null 2>&1 || true
  echo "bench: writing a ~100 MiB json-file log ($LOGC, once)"
  docker run -d --network none --name $LOGC $IMAGE /bin/busybox awk 'BEGIN {
    for (i = 0; i < 800000; i++)
      printf "2026-11-22T07:00:00Z %s request %d handled in %dms\n", (i % 7 ? "INFO" : "ERROR"), i, i % 999
    system("exec /bin/sleep 1000000000") }' >/dev/null
fi
LOGRAW=$(docker inspect -f '{{.LogPath}}' $LOGC)
prev=-1
while [ "$(stat -c %s "$LOGRAW")" != "$prev" ]; do prev=$(stat -c %s "$LOGRAW"); sleep 1; done
LOGMIB=$(( prev >> 20 ))
for _ in $(seq 1 100); do [ -e "$MNT/.logs/$LOGC/all" ] && break; sleep 0.1; done
echo "bench: grep -c ERROR over a $LOGMIB MiB json-file log"
mkdir -p "$OUT/logs"; rm -f "$OUT"/logs/*.json
for r in $(seq 1 "$ROUNDS"); do
  # --output=pipe: GNU grep stops at the first match when its output is /dev/null.
  hyperfine -N --output=pipe --style none --runs "$RUNS" --warmup 1 --export-json "$OUT/logs/r$r.json" \
    "grep -c ERROR $LOGRAW" "grep -c ERROR $MNT/.logs/$LOGC/all" \
    "sh -c 'docker logs $LOGC 2>&1 | grep -c ERROR'" >/dev/null
done
fi

python3 - "$OUT" "$HAVE_BINDFS" <<'PY'
import json, os, statistics, sys
out, have_bindfs = sys.argv[1], sys.argv[2] == "1"
def fmt(s):
    return f"{s*1000:.1f} ms" if s < 10 else f"{s:.2f} s"
rows = []
for label_file in sorted(x for x in os.listdir(out) if x.endswith(".label")):
    rid = label_file[:-6]
    label = open(os.path.join(out, label_file)).read().strip()
    times = []  # per command, every timed run of every round
    for f in sorted(x for x in os.listdir(out) if x.startswith(rid + ".r") and x.endswith(".json")):
        for i, r in enumerate(json.load(open(os.path.join(out, f)))["results"]):
            while len(times) <= i:
                times.append([])
            times[i].extend(r["times"])
    med = [statistics.median(t) for t in times]
    if len(med) == 1:
        rows.append((label, "", fmt(med[0]), "", "", ""))
        continue
    b = (fmt(med[2]), f"{med[2]/med[0]:.2f}") if len(med) > 2 else ("", "")
    rows.append((label, fmt(med[0]), fmt(med[1]), f"{med[1]/med[0]:.2f}") + b)
head = ("workload", "direct /proc/<pid>/root", "ctrfsd", "ratio") + (("bindfs", "bindfs ratio") if have_bindfs else ())
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in rows:
    print("| " + " | ".join(r[:len(head)]) + " |")
PY
if want logs; then python3 - "$OUT/logs" "$LOGMIB" <<'PY'
import json, os, statistics, sys
out, mib = sys.argv[1], sys.argv[2]
times = [[], [], []]
for f in sorted(os.listdir(out)):
    for i, r in enumerate(json.load(open(os.path.join(out, f)))["results"]):
        times[i].extend(r["times"])
raw, view, dl = (statistics.median(t) for t in times)
print()
print("| logs: grep -c ERROR, %s MiB json-file log | raw JSON file | /ctr/.logs view | ratio | docker logs 2>&1 \\| grep | ratio |" % mib)
print("|---|---|---|---|---|---|")
print(f"| warm | {raw*1000:.0f} ms | {view*1000:.0f} ms | {view/raw:.2f} | {dl*1000:.0f} ms | {dl/raw:.2f} |")
PY
# --- logs, cold rows (issue #14) -------------------------------------------------------------
# The same grep when the kernel has not kept the view's decoded pages (ctrfsd decodes the store
# on every read; its index is kept), with the raw file warm, and with both cold. Pages are
# dropped per file (POSIX_FADV_DONTNEED), not with drop_caches, so nothing else on the machine
# loses its cache. Rows continue the logs table above.
drop_files="python3 -c 'import os, sys; [os.posix_fadvise(os.open(p, os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED) for p in sys.argv[1:]]'"
mkdir -p "$OUT/logs-cold"; rm -f "$OUT"/logs-cold/*.json
for r in $(seq 1 "$ROUNDS"); do
  hyperfine -N --output=pipe --style none --runs "$RUNS" --export-json "$OUT/logs-cold/view.r$r.json" \
    --prepare "$drop_files $MNT/.logs/$LOGC/all" "grep -c ERROR $LOGRAW" "grep -c ERROR $MNT/.logs/$LOGC/all" >/dev/null
  hyperfine -N --output=pipe --style none --runs "$RUNS" --export-json "$OUT/logs-cold/both.r$r.json" \
    --prepare "$drop_files $LOGRAW $MNT/.logs/$LOGC/all" "grep -c ERROR $LOGRAW" "grep -c ERROR $MNT/.logs/$LOGC/all" >/dev/null
done
python3 - "$OUT/logs-cold" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
for kind, label in (("view", "the view's pages dropped (index kept), raw file warm"),
                    ("both", "both cold: the raw file's and the view's pages dropped")):
    times = [[], []]
    for f in sorted(x for x in os.listdir(out) if x.startswith(kind + ".")):
        for i, r in enumerate(json.load(open(os.path.join(out, f)))["results"]):
            times[i].extend(r["times"])
    raw, view = (statistics.median(t) for t in times)
    print(f"| {label} | {raw*1000:.0f} ms | {view*1000:.0f} ms | {view/raw:.2f} | | |")
PY
# --- end of the logs cold rows ----------------------------------------------------------------
fi
echo "machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r); medians of $ROUNDS rounds x $RUNS runs"
echo "ctrfsd requests during the whole run: $(getfattr --only-values -n user.ctrfsd.requests "$MNT" 2>/dev/null | tr '\n' ' ')"
fi

if [ $FIRST_DIRS_ONLY = 1 ]; then  # First look: directories, alone
  rm -f "$OUT"/f*.json "$OUT"/f*.label
  first_dirs_find
  SPID=$(ensure ctrfsd-bench-scale)
  [ -e /proc/$SPID/root/w/.complete ] && first_dirs_big ctrfsd-bench-scale "$SPID"
  first_dirs_table
  exit 0
fi
if [ $SCALE = 1 ]; then
  SC=ctrfsd-bench-scale
  SPID=$(ensure $SC)
  if [ ! -e /proc/$SPID/root/m/.complete ]; then
    echo "bench: creating 1,000,000 files in $SC's writable layer (once)"
    python3 - /proc/$SPID/root/m <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    p = os.path.join(root, f"d{d:04}")
    os.makedirs(p, exist_ok=True)
    for f in range(1000):
        open(os.path.join(p, f"f{f:04}"), "w").close()
PY
    touch /proc/$SPID/root/m/.complete
  fi
  kill -TERM $DPID; while kill -0 $DPID 2>/dev/null; do sleep 0.05; done
  sync; echo 3 > /proc/sys/vm/drop_caches
  prlimit --nofile=1024:1024 "$BIN" --log-level warn --runtime none --container "$SC=$SPID" "$MNT" 2>"$WORK/ctrfsd-scale.log" &
  DPID=$!
  echo $DPID > "$PIDFILE"
  for _ in $(seq 1 100); do [ -d "$MNT/$SC/m" ] && break; sleep 0.1; done
  rss() { awk '/VmRSS/{print $2}' /proc/$DPID/status; }
  r0=$(rss)
  start=$(date +%s.%N)
  n=$(find "$MNT/$SC/m" -type f | wc -l)
  t=$(echo "$(date +%s.%N) - $start" | bc)
  r1=$(rss)
  echo 2 > /proc/sys/vm/drop_caches; sleep 7  # the table is shrunk every 5 s
  r2=$(rss)
  fds=$(ls /proc/$DPID/fd | wc -l)
  echo
  echo "| scale: find over $n files, RLIMIT_NOFILE 1024 | value |"
  echo "|---|---|"
  echo "| walk time | ${t%.*} s |"
  echo "| ctrfsd RSS at start | $((r0/1024)) MiB |"
  echo "| ctrfsd RSS with every inode cached | $((r1/1024)) MiB |"
  echo "| ctrfsd RSS after drop_caches (2) | $((r2/1024)) MiB |"
  echo "| bytes per cached inode | $(( (r1 - r0) * 1024 / (n + 1000) )) |"
  echo "| open fds after the walk | $fds |"

  # One directory of 1,000,000 entries: listed in pages, memory as the kernel holds it.
  if [ ! -e /proc/$SPID/root/w/.complete ]; then
    echo "bench: creating 1,000,000 entries in one directory of $SC (once)"
    python3 - /proc/$SPID/root/w <<'PY'
import os, sys
root = sys.argv[1]
os.makedirs(root, exist_ok=True)
for f in range(1_000_000):
    open(os.path.join(root, f"entry-{f:07}"), "w").close()
PY
    touch /proc/$SPID/root/w/.complete
  fi
  sync; echo 3 > /proc/sys/vm/drop_caches; sleep 7
  w0=$(rss)
  start=$(date +%s.%N)
  wn=$(ls -f "$MNT/$SC/w" | grep -c '^entry-')
  wt=$(echo "$(date +%s.%N) - $start" | bc)
  w1=$(rss)
  start=$(date +%s.%N)
  ls -f "$MNT/$SC/w" | grep -c '^entry-' >/dev/null
  wt2=$(echo "$(date +%s.%N) - $start" | bc)
  start=$(date +%s.%N)
  ls -f "/proc/$SPID/root/w" | grep -c '^entry-' >/dev/null
  wtd=$(echo "$(date +%s.%N) - $start" | bc)
  start=$(date +%s.%N)
  ln=$(ls -l "$MNT/$SC/w" | grep -c ' entry-')
  lt=$(echo "$(date +%s.%N) - $start" | bc)
  w2=$(rss)
  fds=$(ls /proc/$DPID/fd | wc -l)
  echo
  echo "| scale: one directory of $wn entries, RLIMIT_NOFILE 1024 | value |"
  echo "|---|---|"
  echo "| \`ls -f\` through ctrfsd, cold / again | ${wt} s / ${wt2} s |"
  echo "| \`ls -f\` through /proc/<pid>/root, warm | ${wtd} s |"
  echo "| \`ls -l\` ($ln entries) through ctrfsd | ${lt} s |"
  echo "| ctrfsd RSS before / after ls -f / after ls -l | $((w0/1024)) / $((w1/1024)) / $((w2/1024)) MiB |"
  echo "| open fds after | $fds |"
  first_dirs_big "$SC" "$SPID"  # First look: directories
  first_dirs_table
fi
