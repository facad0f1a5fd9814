// Package helm holds the Helm chart (envoy-okta-authz/) in a Go module of its own, so that the
// Helm SDK and the Gateway API, Envoy Gateway and Prometheus Operator types its tests need do not
// change the versions the service itself builds with. The tests render the chart as helm template
// does, for several value sets, lint it, decode every object strictly into its API type and
// cross-check them; they check the Envoy Gateway example (../envoy-gateway) the same way, and
// generate ../kubernetes/authz.yaml from the chart's defaults.
package helm
