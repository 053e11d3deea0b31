#!/usr/bin/env bash
# Builds the statically linked ctrfsd with this machine's own toolchain (no extra rustup target,
# no musl): glibc linked statically into a static PIE. `--target` keeps the flag off build
# scripts and proc macros. Checks with ldd that the result needs no shared library, and prints
# its path last. Used by scripts/package.sh (the .deb ships it) and scripts/build-image.sh (the
# Kubernetes image is only this binary), so both share one build.
#
#   scripts/build-static.sh      # -> target/<host triple>/release/ctrfsd
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" >&2
bin=${CARGO_TARGET_DIR:-target}/$target/release/ctrfsd
linkage=$(ldd "$bin" 2>&1 || true)
case "$linkage" in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) echo "build-static.sh: $bin is not static:" >&2; echo "$linkage" >&2; exit 1 ;;
esac
echo "$bin"
