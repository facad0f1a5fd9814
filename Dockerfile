# One image for the three binaries: authz, demoapi and devidp (the compose file picks one each).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/authz ./cmd/demoapi ./cmd/devidp

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# authz: gRPC ext_authz, HTTP decision API, admin
EXPOSE 9001 9002 9003
ENTRYPOINT ["/usr/local/bin/authz"]
