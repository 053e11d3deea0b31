#!/usr/bin/env bash
# Installs and starts what the test suite needs on a fresh Debian machine, as root:
#   fuse3 (fusermount3, for completeness), busybox-static (test images and fake containers),
#   attr (getfattr/setfattr), debootstrap (a Debian tree for the differential check),
#   docker.io, and a Docker engine with no network:
#   dockerd --bridge=none --iptables=false --ip-masq=false
# Idempotent: installs only what is missing and starts dockerd only if none answers.
set -euo pipefail

need=()
for pair in fusermount3:fuse3 busybox:busybox-static getfattr:attr dockerd:docker.io debootstrap:debootstrap \
            unshare:util-linux setpriv:util-linux python3:python3; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ -x /bin/busybox ] || need+=(busybox-static)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd (no bridge, no iptables: containers get no network)"
  log=${TMPDIR:-/tmp}/ctrfsd-dockerd.log
  nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see $log" >&2; tail -20 "$log" >&2; exit 1; }
fi
echo "setup: ready (docker $(docker version --format '{{.Server.Version}}'))"
