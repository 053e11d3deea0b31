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
# The static binary alone: scripts/build-static.sh (shared with scripts/build-image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q " $CARGO_DEB_VERSION$"; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi

target=$(rustc -vV | sed -n 's/^host: //p')
bin=$(scripts/build-static.sh)
echo "package: $bin: static"

# Man page and completions from the same clap definitions as --help (a dev build of an
# example: not part of `cargo install`).
cargo run --locked --quiet --example gen-docs -- target/assets

cargo deb --no-build --locked --target "$target" --output target/debian/ | tail -n 1
