#!/usr/bin/env bash
# Builds the .deb (scripts/package.sh), installs it with dpkg -i on this machine, and checks
# what a packager and a user rely on: `ctrfsd --version` names a commit, `man -w ctrfsd`
# finds the page, the unit is where systemd looks and passes `systemd-analyze verify`, the
# completions and /etc/default/ctrfsd (a conffile) are there, the binary is static and serves
# a mount. Then `dpkg -r` must leave no mount behind: one ctrfsd started by hand and still
# serving, and one killed (a dead mount), are both gone afterwards. Run as root; called by
# scripts/test.sh. Removes the package again (dpkg -P) whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
ok() { echo "test-package: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "run as root"
if dpkg-query -W -f='${Status}' ctrfsd 2>/dev/null | grep -q 'ok installed'; then
  fail "a ctrfsd package is already installed here; remove it first (dpkg -r ctrfsd)"
fi
deb=$(scripts/package.sh | tail -n 1)
[ -f "$deb" ] || fail "scripts/package.sh did not print a .deb path (got: $deb)"

tmp=$(mktemp -d)
pids=()
ctr=""
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for m in "$tmp"/live "$tmp"/dead; do
    findmnt -rn -M "$m" >/dev/null 2>&1 && umount -l "$m" || true
  done
  dpkg -P ctrfsd >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

dpkg -i "$deb" >/dev/null
ok "dpkg -i $deb"

v=$(ctrfsd --version)
[[ "$v" =~ ^ctrfsd\ [0-9.]+\ \(commit\ [0-9a-f]{7,} ]] || fail "ctrfsd --version: $v"
ok "ctrfsd --version: $v"
[ "$(command -v ctrfsd)" = /usr/bin/ctrfsd ] || fail "ctrfsd is $(command -v ctrfsd), not /usr/bin/ctrfsd"
man -w ctrfsd >/dev/null || fail "man -w ctrfsd"
ok "man -w ctrfsd: $(man -w ctrfsd)"
linkage=$(ldd /usr/bin/ctrfsd 2>&1 || true)
case "$linkage" in
  *"statically linked"* | *"not a dynamic executable"*) ok "ldd /usr/bin/ctrfsd: $linkage" ;;
  *) fail "/usr/bin/ctrfsd is dynamic: $linkage" ;;
esac

# Where systemd looks for system units (it need not run for this).
unit=""
for dir in $(systemd-analyze --system unit-paths); do
  [ -f "$dir/ctrfsd.service" ] && unit=$dir/ctrfsd.service && break
done
[ -n "$unit" ] || fail "ctrfsd.service is in none of systemd's unit paths"
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
[ -z "$out" ] || fail "systemd-analyze verify $unit warns: $out"
ok "unit $unit passes systemd-analyze verify (with the installed binary and man page)"
for f in /usr/share/bash-completion/completions/ctrfsd /usr/share/zsh/vendor-completions/_ctrfsd \
         /usr/share/fish/vendor_completions.d/ctrfsd.fish /usr/share/doc/ctrfsd/README.md \
         /usr/share/doc/ctrfsd/LICENSE-MIT /usr/share/doc/ctrfsd/LICENSE-APACHE; do
  [ -s "$f" ] || fail "$f is missing"
done
dpkg-query -W -f='${Conffiles}\n' ctrfsd | grep -q '^ /etc/default/ctrfsd ' || fail "/etc/default/ctrfsd is not a conffile"
ok "completions, docs and the conffile /etc/default/ctrfsd are installed"
bash -c 'source /usr/share/bash-completion/completions/ctrfsd && complete -p ctrfsd' >/dev/null \
  || fail "the bash completion does not register"

# The installed binary serves a mount: one stays live, one is killed and leaves a dead mount.
wait_mounted() {
  for _ in $(seq 1 200); do
    findmnt -rn -t fuse.ctrfsd -M "$1" >/dev/null && ls "$1/.pid" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
mkdir "$tmp/live" "$tmp/dead"
# A process in a mount namespace of its own: what ctrfsd serves as a container.
unshare --mount --propagation private sleep 1000000 &
ctr=$!
pids+=($ctr)
/usr/bin/ctrfsd --runtime none --container "pkgtest=$ctr" "$tmp/live" 2>"$tmp/live.log" &
pids+=($!)
/usr/bin/ctrfsd --runtime none "$tmp/dead" 2>"$tmp/dead.log" &
dead=$!
pids+=($dead)
wait_mounted "$tmp/live" || fail "the installed ctrfsd did not mount: $(cat "$tmp/live.log")"
wait_mounted "$tmp/dead" || fail "the installed ctrfsd did not mount: $(cat "$tmp/dead.log")"
[ -f "$tmp/live/pkgtest/etc/os-release" ] || fail "$tmp/live/pkgtest/etc/os-release is not served"
kill -KILL "$dead"; wait "$dead" 2>/dev/null || true
stat -f "$tmp/dead" >/dev/null 2>&1 && fail "the killed ctrfsd's mount still answers"
ok "installed binary serves $tmp/live; $tmp/dead is a dead mount"

dpkg -r ctrfsd >/dev/null
for m in "$tmp/live" "$tmp/dead"; do
  ! findmnt -rn -M "$m" >/dev/null || fail "dpkg -r left a mount on $m: $(findmnt -rn -M "$m")"
done
for p in "${pids[@]}"; do
  [ "$p" = "$ctr" ] && continue
  ! kill -0 "$p" 2>/dev/null || fail "dpkg -r left ctrfsd $p running"
done
[ ! -e /usr/bin/ctrfsd ] || fail "dpkg -r left /usr/bin/ctrfsd"
ok "dpkg -r stopped ctrfsd and left no mount behind"
echo "test-package: all passed"
