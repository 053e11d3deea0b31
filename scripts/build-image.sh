#!/bin/sh
# Builds the DaemonSet's container image (deploy/kubernetes/ctrfsd.yaml) from this repository
# alone, without any registry: a statically linked ctrfsd at /ctrfsd in an otherwise empty image
# (but for the /var/run -> ../run link), made with `docker import` of a tar.
#
#   scripts/build-image.sh [TAG]     # default TAG: ctrfsd:<version in Cargo.toml>
#
# Then load it into each node's runtime, e.g. for containerd (the kubelet's k8s.io namespace):
#   docker save ctrfsd:0.1.0 | ssh NODE ctr -n k8s.io images import -
set -eu
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
tag=${1:-ctrfsd:$version}
# Static (scripts/build-static.sh checks it), or the empty image cannot start it.
bin=$(scripts/build-static.sh)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
install -m 0755 "$bin" "$dir/ctrfsd"
# Beside the binary, only the link every host has, so runtime sockets are found at their
# documented paths (/var/run/docker.sock, /var/run/crio/crio.sock) inside the host's /run.
mkdir "$dir/var"
ln -s ../run "$dir/var/run"
tar -C "$dir" --owner=0 --group=0 -cf - ctrfsd var |
    docker import \
        --change 'ENTRYPOINT ["/ctrfsd"]' \
        --message "ctrfsd $version, static" \
        - "$tag" >/dev/null
echo "$tag"
