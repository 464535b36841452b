#!/usr/bin/env bash
# Builds remediator's OCI image archive offline, with buildah and no registry: FROM scratch,
# the static remediator and etcdutl binaries, CA certificates, user 65532. Run by `make image`:
#   image/build.sh OUT.tar REMEDIATOR_BIN ETCDUTL_BIN VERSION COMMIT CREATED
# The Dockerfile beside this builds the same image for those who build with docker; the image
# test (deploy/image_test.go) checks that the two agree.
set -euo pipefail
out=$1 remediator=$2 etcdutl=$3 version=$4 commit=$5 created=$6

# buildah keeps its containers and layers here, not in /var/lib/containers, and needs no
# daemon, no user namespaces (vfs, chroot isolation) and no network.
store=$(mktemp -d)
trap 'buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs rm --all >/dev/null 2>&1 || true; rm -rf "$store"' EXIT
b() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot

# What a FROM scratch image needs beside the binaries: certificates for Slack's HTTPS, and
# a passwd entry so that user 65532 has a name.
etc=$(mktemp -d "$store/etc.XXXX")
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$etc/group"

ctr=$(b from --format oci scratch)
b copy --quiet --chmod 0755 "$ctr" "$remediator" /usr/local/bin/remediator
b copy --quiet --chmod 0755 "$ctr" "$etcdutl" /usr/local/bin/etcdutl
b copy --quiet --chmod 0644 "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
b copy --quiet --chmod 0644 "$ctr" "$etc/passwd" "$etc/group" /etc/
b config \
  --user 65532:65532 \
  --workingdir / \
  --entrypoint '["/usr/local/bin/remediator"]' \
  --cmd '["serve"]' \
  --env PATH=/usr/local/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label org.opencontainers.image.title=remediator \
  --label "org.opencontainers.image.description=Heals etcd and the Kubernetes control plane, and asks first where a step is risky" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$commit" \
  --label org.opencontainers.image.source=https://github.com/remediator/remediator \
  --label "org.opencontainers.image.created=$created" \
  --created-by "make image" \
  "$ctr"
rm -f "$out"
# gzip halves what every node pulls (about 40 MB against 84); with the commit's time as every
# file's and the config's, the same binaries give the same layer, config and manifest digests.
b commit --quiet --format oci --disable-compression=false --timestamp "$(date -d "$created" +%s)" "$ctr" "oci-archive:$out" >/dev/null
