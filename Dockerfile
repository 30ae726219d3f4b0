# The Kubernetes-mode image: the provider (`pronghorn provider --backend
# kubernetes`) and the agent that every function pod copies in from it (see
# yaml/ and chart/). The binary is static so it runs inside any function image.
# /home/app/faas-netes, in the working directory, is what the upstream
# openfaas chart runs (`./faas-netes`) when this image replaces faas-netes
# (chart/upstream/).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/pronghorn .

FROM debian:bookworm-slim
COPY --from=build /out/pronghorn /usr/bin/pronghorn
COPY cluster/images/faas-netes /home/app/faas-netes
WORKDIR /home/app
USER 10001
ENTRYPOINT ["/usr/bin/pronghorn"]
