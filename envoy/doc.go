// Package envoy holds the project's Envoy configurations (envoy.yaml: ext_authz over gRPC;
// envoy-http.yaml: ext_authz over HTTP) and the tests that validate them against Envoy's own API
// schema and cross-check them with docker-compose.yml: no Envoy binary is needed to catch a
// typo, a wrong type, a missing field or a dangling cluster name.
package envoy
