# remediator's image, for those who build with docker:
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(git log -1 --format=%cI) -t remediator .
# `make image` builds the same image offline with buildah (image/build.sh); the image test
# (deploy/image_test.go) checks that this file and that script give it the same user,
# entrypoint, command and labels.
FROM golang:1.26.8-bookworm AS build
ARG VERSION=unknown
ARG COMMIT=unknown
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/remediator ./cmd/remediator \
 && cd tools/etcd && CGO_ENABLED=0 go build -trimpath -o /out/etcdutl ./etcdutl \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/out/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/out/group

FROM scratch
ARG VERSION=unknown
ARG COMMIT=unknown
ARG CREATED=unknown
COPY --from=build --chmod=0755 /out/remediator /out/etcdutl /usr/local/bin/
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /out/group /etc/
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title="remediator" \
      org.opencontainers.image.description="Heals etcd and the Kubernetes control plane, and asks first where a step is risky" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="https://github.com/remediator/remediator" \
      org.opencontainers.image.created="${CREATED}"
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/usr/local/bin/remediator"]
CMD ["serve"]
