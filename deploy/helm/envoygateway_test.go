package helm

import (
	"slices"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The Envoy Gateway example, and the chart release it assumes (named in gateway.yaml's comment).
const (
	egDir       = "../envoy-gateway/"
	egNamespace = "authz"
	// egCallers is the --set gateway.yaml tells the chart's install to admit Envoy Gateway's proxies.
	egCallers = `networkPolicy.grpcFrom[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=envoy-gateway-system`
)

func egObjects(t *testing.T) (objects, [][]byte) {
	t.Helper()
	var stream strings.Builder
	for _, f := range []string{"gateway.yaml", "demoapi.yaml"} {
		stream.WriteString("\n---\n")
		stream.Write(readFile(t, egDir+f))
	}
	return decodeAll(t, stream.String()), splitDocuments(stream.String())
}

// TestEnvoyGatewayExample decodes the example strictly into the Gateway API and Envoy Gateway
// types, validates the custom resources against their CRDs (schema and CEL rules), and checks
// that the SecurityPolicy reaches the Service the chart renders, fails closed and sends the
// service what it needs.
func TestEnvoyGatewayExample(t *testing.T) {
	o, docs := egObjects(t)
	crds := crdSchemas{}
	loadCRDs(t, crds, "sigs.k8s.io/gateway-api", "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
		"config/crd/standard/gateway.networking.k8s.io_gateways.yaml", "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
		"config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml")
	loadCRDs(t, crds, "github.com/envoyproxy/gateway",
		"charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_securitypolicies.yaml")
	for _, doc := range docs {
		if strings.Contains(string(doc), "\napiVersion: gateway.") {
			assert.Empty(t, crds.validate(t, doc), "%s", firstLines(doc))
		}
	}

	require.Len(t, o.GatewayClasses, 1)
	require.Len(t, o.Gateways, 1)
	require.Len(t, o.HTTPRoutes, 1)
	require.Len(t, o.SecurityPolicies, 1)
	require.Len(t, o.ReferenceGrants, 1)
	class, gw, route, sp, grant := o.GatewayClasses[0], o.Gateways[0], o.HTTPRoutes[0], o.SecurityPolicies[0], o.ReferenceGrants[0]

	// Gateway → class; route → Gateway listener; route → demo API Service → its pods.
	assert.Equal(t, gwapiv1.GatewayController("gateway.envoyproxy.io/gatewayclass-controller"), class.Spec.ControllerName)
	assert.Equal(t, class.Name, string(gw.Spec.GatewayClassName))
	require.Len(t, route.Spec.ParentRefs, 1)
	assert.Equal(t, gw.Name, string(route.Spec.ParentRefs[0].Name))
	assert.Equal(t, gw.Namespace, route.Namespace)
	assert.Equal(t, string(gw.Spec.Listeners[0].Name), string(*route.Spec.ParentRefs[0].SectionName))
	var paths []string
	for _, r := range route.Spec.Rules {
		for _, m := range r.Matches {
			paths = append(paths, *m.Path.Value)
		}
		require.Len(t, r.BackendRefs, 1)
		ref := r.BackendRefs[0]
		svc := findService(t, o.Services, string(ref.Name), route.Namespace)
		port := findPort(t, svc, int32(*ref.Port))
		assert.Equal(t, int32(3000), port.Port, "the demo API listens on 3000")
		checkServiceTargetsPods(t, svc, o)
	}
	assert.ElementsMatch(t, []string{"/secure", "/api/messages"}, paths)

	// The SecurityPolicy: the whole Gateway (a policy on one route leaves another route of the
	// Gateway, which may take precedence, unchecked), the chart's Service port 9001 across
	// namespaces, closed.
	require.Len(t, sp.Spec.TargetRefs, 1)
	assert.Equal(t, "Gateway", string(sp.Spec.TargetRefs[0].Kind))
	assert.Equal(t, gw.Name, string(sp.Spec.TargetRefs[0].Name))
	assert.Equal(t, gw.Namespace, sp.Namespace)
	assert.Equal(t, route.Namespace, sp.Namespace)
	ext := sp.Spec.ExtAuth
	require.NotNil(t, ext)
	require.NotNil(t, ext.GRPC, "gRPC ext_authz, the service's Check")
	assert.Nil(t, ext.HTTP)
	require.NotNil(t, ext.FailOpen, "fail closed, said explicitly")
	assert.False(t, *ext.FailOpen)
	assert.Equal(t, int32(503), *ext.StatusOnError)
	assert.Empty(t, ext.HeadersToExtAuth, "all headers: the service removes the client's x-authz-* only when it sees them")
	require.Len(t, ext.GRPC.BackendRefs, 1)
	ref := ext.GRPC.BackendRefs[0].BackendObjectReference
	assert.Nil(t, ref.Kind, "a Service (the default kind)")
	require.NotNil(t, ref.Namespace)
	assert.Equal(t, egNamespace, string(*ref.Namespace))
	hc := ext.GRPC.BackendSettings.HealthCheck.Active
	assert.Equal(t, egv1a1.ActiveHealthCheckerTypeGRPC, hc.Type, "gRPC health: NOT_SERVING until keys load and while draining")

	chart := decodeAll(t, mustRenderIn(t, "authz", egNamespace, append(slices.Clone(minimal), egCallers)...).Manifest)
	svc := findService(t, chart.Services, string(ref.Name), egNamespace)
	port := findPort(t, svc, int32(*ref.Port))
	assert.Equal(t, "grpc", port.Name)
	assert.Equal(t, "grpc", *port.AppProtocol, "HTTP/2 to the service")

	// The grant lives in the Service's namespace and admits this SecurityPolicy's namespace.
	assert.Equal(t, egNamespace, grant.Namespace)
	require.Len(t, grant.Spec.From, 1)
	assert.Equal(t, "gateway.envoyproxy.io", string(grant.Spec.From[0].Group))
	assert.Equal(t, "SecurityPolicy", string(grant.Spec.From[0].Kind))
	assert.Equal(t, sp.Namespace, string(grant.Spec.From[0].Namespace))
	require.Len(t, grant.Spec.To, 1)
	assert.Equal(t, "Service", string(grant.Spec.To[0].Kind))
	assert.Equal(t, svc.Name, string(*grant.Spec.To[0].Name))

	// The chart, installed as gateway.yaml says, admits Envoy Gateway's namespace on 9001.
	assert.Contains(t, string(readFile(t, egDir+"gateway.yaml")), egCallers)
	require.Len(t, chart.NetworkPolicies, 1)
	var admitted []string
	for _, rule := range chart.NetworkPolicies[0].Spec.Ingress {
		if rule.Ports[0].Port.IntValue() == 9001 {
			for _, peer := range rule.From {
				if peer.NamespaceSelector != nil {
					admitted = append(admitted, peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
				}
			}
		}
	}
	assert.Equal(t, []string{"envoy-gateway-system"}, admitted)

	// The demo API trusts identity headers: only the gateway's namespace reaches it.
	require.Len(t, o.NetworkPolicies, 1)
	demoNP := o.NetworkPolicies[0]
	assert.Equal(t, "envoy-gateway-system", demoNP.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
	assert.Equal(t, o.Deployments[0].Spec.Selector.MatchLabels, demoNP.Spec.PodSelector.MatchLabels)
}

func findService(t *testing.T, services []corev1.Service, name, namespace string) corev1.Service {
	t.Helper()
	for _, s := range services {
		if s.Name == name && (s.Namespace == namespace || s.Namespace == "") {
			return s
		}
	}
	require.FailNow(t, "no Service "+namespace+"/"+name)
	return corev1.Service{}
}

func findPort(t *testing.T, svc corev1.Service, port int32) corev1.ServicePort {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return p
		}
	}
	require.FailNow(t, "Service has no port", "%s: %d", svc.Name, port)
	return corev1.ServicePort{}
}

// checkServiceTargetsPods: the Service selects a Deployment's pods and its named target port is
// one of their container ports.
func checkServiceTargetsPods(t *testing.T, svc corev1.Service, o objects) {
	t.Helper()
	for _, d := range o.Deployments {
		selected := d.Namespace == svc.Namespace
		for k, v := range svc.Spec.Selector {
			selected = selected && d.Spec.Template.Labels[k] == v
		}
		if !selected {
			continue
		}
		for _, p := range svc.Spec.Ports {
			found := slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool {
				return intstr.FromString(cp.Name) == p.TargetPort
			})
			assert.True(t, found, "Service %s port %s targets a container port of %s", svc.Name, p.Name, d.Name)
		}
		return
	}
	t.Errorf("Service %s selects no Deployment's pods", svc.Name)
}
