#!/usr/bin/env bash
# Builds the Debian package target/debian/ctrfsd_<version>-1_<arch>.deb with cargo-deb
# (settings: [package.metadata.deb] in Cargo.toml):
#   /usr/bin/ctrfsd                     the static binary (below), which runs on any glibc or none
#   /lib/systemd/system/ctrfsd.service  deploy/systemd/ctrfsd.service
#   /etc/default/ctrfsd                 deploy/debian/default (a conffile)
#   man page, bash/zsh/fish completions examples/gen-docs.rs makes from the clap definitions
#   README, CHANGELOG, licenses         /usr/share/doc/ctrfsd/
# Installs cargo-deb (pinned) from crates.io if it is missing. Prints the .deb's path last.
#
# The static binary alone, with this machine's toolchain (no extra rustup target):
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu
#   -> target/x86_64-unknown-linux-gnu/release/ctrfsd   (`ldd`: "statically linked")
# --target is what keeps the flag off build scripts and proc macros, which must stay dynamic.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q " $CARGO_DEB_VERSION$"; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi

target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target"
bin=${CARGO_TARGET_DIR:-target}/$target/release/ctrfsd
# glibc's ldd says "statically linked" for a static PIE, "not a dynamic executable" for a
# static non-PIE; anything else lists libraries.
linkage=$(ldd "$bin" 2>&1 || true)
case "$linkage" in
  *"statically linked"* | *"not a dynamic executable"*) echo "package: $bin: static ($(echo $linkage))" ;;
  *) echo "package: $bin is not static:" >&2; echo "$linkage" >&2; exit 1 ;;
esac

# Man page and completions from the same clap definitions as --help (a dev build of an
# example: not part of `cargo install`).
cargo run --locked --quiet --example gen-docs -- target/assets

cargo deb --no-build --locked --target "$target" --output target/debian/ | tail -n 1
