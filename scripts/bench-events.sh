#!/usr/bin/env bash
# How long a Docker container takes to appear under the mount while an unprivileged user's
# endpoint holds many junk containers (issue 13: 20,000 of them slowed every other runtime's
# events from 34 ms to 0.42 s while each insert rebuilt the whole tree of names). Run as root:
#   sudo scripts/bench-events.sh
# A fake Docker API (tests/data/fake_docker_api.py) runs as the user ctrfsd-test (made by
# scripts/setup.sh) and lists JUNK stopped containers; ctrfsd watches it as that user's
# rootless Podman (CTRFSD_USER_SOCKET) and Docker. Once every junk container is listed (or
# the per-user cap is reached), ROUNDS times: `docker run -d` a container and poll every 2 ms
# until its name is under the mount. Prints, per round and as medians: from the start of
# `docker run` to the name, and from `docker run`'s return to the name. Then the same without
# the junk endpoint.
# Env: JUNK (default 20000), ROUNDS (default 15), CTRFSD_BIN (a ctrfsd binary to measure
# instead of building this tree's release build, e.g. an older build for a paired run),
# IMAGE (default ctrfsd-bench:1, made by scripts/bench.sh; any image with `sleep`).
set -euo pipefail
cd "$(dirname "$0")/.."
JUNK=${JUNK:-20000}
ROUNDS=${ROUNDS:-15}
IMAGE=${IMAGE:-ctrfsd-bench:1}
USER_NAME=ctrfsd-test
[ "$(id -u)" = 0 ] || { echo "bench-events.sh: run as root" >&2; exit 1; }
uid=$(id -u "$USER_NAME") || { echo "run scripts/setup.sh first (user $USER_NAME)" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 ||
  { echo "image $IMAGE missing: run scripts/bench.sh once, or set IMAGE" >&2; exit 1; }
if [ -z "${CTRFSD_BIN:-}" ]; then
  cargo build --release --locked --quiet
  CTRFSD_BIN=target/release/ctrfsd
fi
tag=bench-events-$$
work=$(mktemp -d /run/ctrfsd-$tag.XXXX)
run=/run/user/$uid/ctrfsd-$tag
mnt=$work/mnt
mkdir -p "$mnt"
as_user() { exec setpriv --reuid "$uid" --regid "$uid" --clear-groups "$@"; }
fake_pid='' ctrfsd_pid=''
cleanup() {
  docker ps -aq --filter "name=ctrfsd-$tag-" | xargs -r docker rm -f >/dev/null 2>&1 || true
  [ -n "$ctrfsd_pid" ] && kill "$ctrfsd_pid" 2>/dev/null && wait "$ctrfsd_pid" 2>/dev/null
  umount -l "$mnt" 2>/dev/null || true
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
  rm -rf "$run" "$work"
}
trap cleanup EXIT
(as_user mkdir -m 700 "$run")
chmod 755 "$work"
cp tests/data/fake_docker_api.py "$work/fake.py"
python3 - "$JUNK" >"$work/spec.json" <<'EOF'
import hashlib, json, sys
n = int(sys.argv[1])
print(json.dumps({"endless": False, "containers": [
    {"Id": hashlib.sha256(b"junk%d" % i).hexdigest(), "Name": "junk%d" % i}
    for i in range(n)]}))
EOF
chmod 644 "$work/spec.json" "$work/fake.py"
ms() { echo $(( $(date +%s%N) / 1000000 )); }

# One measured ctrfsd: `$1` is "junk" (with the junk endpoint) or "none".
measure() {
  local with=$1 log=$work/ctrfsd-$1.log
  if [ "$with" = junk ]; then
    (as_user /usr/bin/python3 "$work/fake.py" "$run/api.sock" "$work/spec.json" "$run/stats.json") &
    fake_pid=$!
    for _ in $(seq 500); do [ -S "$run/api.sock" ] && break; sleep 0.02; done
    CTRFSD_USER_SOCKET=ctrfsd-$tag/api.sock "$CTRFSD_BIN" --runtime docker --runtime podman \
      "$mnt" >"$log" 2>&1 &
  else
    "$CTRFSD_BIN" --runtime docker "$mnt" >"$log" 2>&1 &
  fi
  ctrfsd_pid=$!
  local t0 shown=0 last=-1 still=0
  t0=$(ms)
  for _ in $(seq 600); do mountpoint -q "$mnt" && break; sleep 0.1; done
  if [ "$with" = junk ]; then
    # Listed once the count stops growing for 5 s (the cap may hold it below JUNK).
    while :; do
      # (ls, not find: other containers come and go meanwhile)
      shown=$(ls -f "$mnt" | grep -c "^junk.*@$USER_NAME\$" || true)
      [ "$shown" -ge "$JUNK" ] && break
      if [ "$shown" = "$last" ]; then still=$((still + 1)); else still=0; last=$shown; fi
      [ "$still" -ge 10 ] && [ "$shown" -gt 0 ] && break
      sleep 0.5
    done
    echo "junk endpoint: $shown of $JUNK containers listed after $(( $(ms) - t0 )) ms" \
      "(ctrfsd VmRSS $(awk '/VmRSS/ {print $2, $3}' /proc/$ctrfsd_pid/status))"
  fi
  local from_run=() after_run=()
  for r in $(seq "$ROUNDS"); do
    local name=ctrfsd-$tag-$with-$r a b c
    a=$(ms)
    docker run -d --name "$name" "$IMAGE" sleep 100000 >/dev/null
    b=$(ms)
    until [ -e "$mnt/$name" ]; do sleep 0.002; done
    c=$(ms)
    from_run+=($((c - a)))
    after_run+=($((c > b ? c - b : 0)))
    docker rm -f "$name" >/dev/null
  done
  median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
  echo "$with: docker run -> name: ${from_run[*]} ms (median $(median "${from_run[@]}"));" \
    "after docker run returned: ${after_run[*]} ms (median $(median "${after_run[@]}"))"
  kill "$ctrfsd_pid"; wait "$ctrfsd_pid" 2>/dev/null || true; ctrfsd_pid=''
  for _ in $(seq 100); do mountpoint -q "$mnt" || break; sleep 0.1; done
  if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; fake_pid=''; fi
  rm -f "$run/api.sock"
}

echo "ctrfsd: $CTRFSD_BIN; JUNK=$JUNK ROUNDS=$ROUNDS IMAGE=$IMAGE"
measure junk
measure none
