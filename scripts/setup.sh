#!/usr/bin/env bash
# Installs and starts what the test suite needs on a fresh Debian machine, as root:
#   fuse3 (fusermount3, for completeness), busybox-static (test images and fake containers),
#   attr (getfattr/setfattr), debootstrap (a Debian tree for the differential check),
#   gcc + libc6-dev (a static test program), libarchive-tools (bsdtar) and inotify-tools
#   (inotifywait): tools whose view of /ctr the tests compare with the kernel's,
#   nginx (Debian's: tests/logs_nginx.rs builds an image of its binary; never started here),
#   systemd (systemd-analyze verify, offline: no systemd needs to run), man-db (man -w),
#   for tests/service.rs and scripts/test-package.sh,
#   docker.io, and a Docker engine with no network:
#   dockerd --bridge=none --iptables=false --ip-masq=false
#   containerd (its own daemon on /run/containerd/containerd.sock, with ctr), its CRI plugin set
#   up for pods without a network or a registry (see below),
#   podman + uidmap + runc: a rootful API service on /run/podman/podman.sock and a rootless one
#   for the test user ctrfsd-test on /run/user/<uid>/podman/podman.sock;
#   the group ctrfsd-readers with user ctrfsd-member in it, and ctrfsd-outsider (not in it).
# Idempotent: installs only what is missing and starts each daemon only if none answers.
set -euo pipefail

need=()
for pair in fusermount3:fuse3 busybox:busybox-static getfattr:attr dockerd:docker.io debootstrap:debootstrap \
            unshare:util-linux setpriv:util-linux python3:python3 containerd:containerd ctr:containerd \
            podman:podman newuidmap:uidmap runc:runc curl:curl socat:socat \
            findmnt:util-linux systemd-analyze:systemd man:man-db gzip:gzip dpkg-deb:dpkg \
            bsdtar:libarchive-tools inotifywait:inotify-tools /usr/sbin/nginx:nginx \
            mkfs.erofs:erofs-utils; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ] || need+=("$pkg")
done
[ -x /bin/busybox ] || need+=(busybox-static)
# gcc and a static libc: tests/hostile_image.rs builds a static program for its image.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -e "/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)/libc.a" ] || need+=(libc6-dev)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No service a package brings (nginx) is started: a policy-rc.d that denies starts is put
  # in place for the install when the machine has none (Debian's container images have one).
  policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod 755 $policy; own_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ $own_policy = 0 ] || rm -f $policy
fi

# containerd first: a dockerd started after it uses it too (namespace "moby", which ctrfsd
# leaves to Docker's own API).
if ! ctr version >/dev/null 2>&1; then
  echo "setup: starting containerd"
  log=${TMPDIR:-/tmp}/ctrfsd-containerd.log
  nohup containerd >"$log" 2>&1 &
  for _ in $(seq 1 60); do
    ctr version >/dev/null 2>&1 && break
    sleep 0.5
  done
  ctr version >/dev/null 2>&1 || { echo "setup: containerd did not start; see $log" >&2; tail -20 "$log" >&2; exit 1; }
fi

# containerd's CRI plugin, for the tests that act as the kubelet (tests/cri.rs): this VM forbids
# lowering oom_score_adj, so runc fails every pod sandbox unless restrict_oom_score_adj is set,
# and the sandbox ("pause") image is a local busybox image that sleeps, imported into the k8s.io
# namespace below (no registry). The config is rewritten, and containerd restarted, only when it
# lacks these settings: a restart disturbs whatever uses containerd at that moment.
PAUSE_IMAGE=localhost/ctrfsd-pause:1
conf=/etc/containerd/config.toml
if ! grep -q '^ *restrict_oom_score_adj = true' "$conf" 2>/dev/null \
   || ! grep -q "^ *sandbox_image = \"$PAUSE_IMAGE\"" "$conf" 2>/dev/null; then
  echo "setup: configuring containerd's CRI plugin (restrict_oom_score_adj, sandbox_image); restarting containerd"
  mkdir -p /etc/containerd
  [ -s "$conf" ] || printf 'version = 2\n\n[plugins]\n' >"$conf"
  python3 - "$conf" "$PAUSE_IMAGE" <<'PY'
import re, sys
path, image = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'(?m)^\s*(restrict_oom_score_adj|sandbox_image)\s*=.*\n', '', text)
head = '[plugins."io.containerd.grpc.v1.cri"]'
keys = f'    restrict_oom_score_adj = true\n    sandbox_image = "{image}"\n'
if head in text:
    i = text.index('\n', text.index(head)) + 1
    text = text[:i] + keys + text[i:]
else:
    text += f'\n  {head}\n' + keys
open(path, 'w').write(text)
PY
  old=$(pidof containerd || true)
  if [ -n "$old" ]; then
    kill $old
    for _ in $(seq 1 60); do kill -0 $old 2>/dev/null || break; sleep 0.25; done
  fi
  log=${TMPDIR:-/tmp}/ctrfsd-containerd.log
  nohup containerd >>"$log" 2>&1 &
  for _ in $(seq 1 60); do
    ctr version >/dev/null 2>&1 && break
    sleep 0.5
  done
  ctr version >/dev/null 2>&1 || { echo "setup: containerd did not start again; see $log" >&2; tail -20 "$log" >&2; exit 1; }
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
# The pod sandbox image of containerd's CRI plugin (sandbox_image above): busybox, sleeping.
if ! ctr -n k8s.io images ls -q | grep -qx "$PAUSE_IMAGE"; then
  echo "setup: importing $PAUSE_IMAGE into containerd's k8s.io namespace"
  dir=$(mktemp -d)
  mkdir -p "$dir/bin"
  cp /bin/busybox "$dir/bin/busybox"
  tar -C "$dir" -cf - . | docker import -c 'CMD ["/bin/busybox", "sleep", "2147483647"]' - "$PAUSE_IMAGE" >/dev/null
  docker save "$PAUSE_IMAGE" | ctr -n k8s.io images import - >/dev/null
  rm -rf "$dir"
fi
# Podman's API services. runc, not crun: crun refuses cgroup v1/v2 hybrid hosts.
podman_up() { curl -sf --unix-socket "$1" http://d/_ping >/dev/null 2>&1; }
if ! podman_up /run/podman/podman.sock; then
  echo "setup: starting the rootful Podman API service"
  mkdir -p /run/podman
  nohup podman --runtime runc system service --time=0 unix:///run/podman/podman.sock \
    >"${TMPDIR:-/tmp}/ctrfsd-podman.log" 2>&1 &
fi
user=ctrfsd-test
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$user"
uid=$(id -u "$user")
grep -q "^$user:" /etc/subuid || echo "$user:200000:65536" >>/etc/subuid
grep -q "^$user:" /etc/subgid || echo "$user:200000:65536" >>/etc/subgid
install -d -o "$user" -g "$user" -m 700 "/run/user/$uid" "/run/user/$uid/podman"
sock=/run/user/$uid/podman/podman.sock
if ! podman_up "$sock"; then
  echo "setup: starting the rootless Podman API service of $user"
  (cd "/home/$user" && exec setpriv --reuid="$uid" --regid="$uid" --init-groups \
    env -i HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="/run/user/$uid" PATH=/usr/bin:/bin \
    nohup podman --runtime runc system service --time=0 "unix://$sock" \
    >"${TMPDIR:-/tmp}/ctrfsd-podman-rootless.log" 2>&1 &)
fi
# --allow-group tests (tests/permissions.rs): a group that may read the mount, one member of
# it and one user outside it, both without a login shell.
getent group ctrfsd-readers >/dev/null || groupadd ctrfsd-readers
id ctrfsd-member >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin -G ctrfsd-readers ctrfsd-member
id -nG ctrfsd-member | grep -qw ctrfsd-readers || usermod -aG ctrfsd-readers ctrfsd-member
id ctrfsd-outsider >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin ctrfsd-outsider
for s in /run/podman/podman.sock "$sock"; do
  for _ in $(seq 1 60); do podman_up "$s" && break; sleep 0.5; done
  podman_up "$s" || { echo "setup: no Podman API answers on $s" >&2; exit 1; }
done
echo "setup: ready (docker $(docker version --format '{{.Server.Version}}'), containerd $(ctr version 2>/dev/null | awk '/Version/{print $2; exit}'), podman $(podman --version | awk '{print $3}'))"
