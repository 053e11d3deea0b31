#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, integration tests that mount FUSE
# for real against real processes and a real Docker engine, then the Debian package installed
# and removed with dpkg (scripts/test-package.sh). Run as root:
#   sudo scripts/test.sh
# It installs and starts what the tests need (scripts/setup.sh). No test is skipped: a test
# whose prerequisite is missing fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the tests mount FUSE and drive Docker; run as root (sudo scripts/test.sh)" >&2
  exit 1
fi
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# Every public item documented, and no broken doc links.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked
cargo test --locked --no-fail-fast -- --test-threads=4
# The Debian package: build it (static binary), install, check, remove; no mount left behind.
scripts/test-package.sh
