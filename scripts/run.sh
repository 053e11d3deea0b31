#!/usr/bin/env bash
# Builds ctrfsd (release) and runs it as root, on a fresh Debian machine that has only Rust:
#   scripts/run.sh                               # every container, on /ctr
#   scripts/run.sh --runtime docker /mnt/ctr     # ctrfsd's own options; mountpoint last
# Run it as yourself (it builds with your toolchain, then asks sudo to run) or as root.
# Installs fuse3 if missing (the FUSE device and its settings), creates an absolute mountpoint
# given last, and runs ctrfsd in the foreground: Ctrl-C unmounts and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "${CTRFSD_RUN_BUILT:-}" = 1 ] || cargo build --release --locked
if [ "$(id -u)" != 0 ]; then
  exec sudo env CTRFSD_RUN_BUILT=1 "$PWD/scripts/run.sh" "$@"
fi
if ! command -v fusermount3 >/dev/null 2>&1; then
  echo "run: installing fuse3"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends fuse3 >/dev/null
fi
[ -e /dev/fuse ] || modprobe fuse
(($#)) || set -- /ctr
last=${!#}
[[ "$last" != /* ]] || mkdir -p "$last"
exec target/release/ctrfsd "$@"
