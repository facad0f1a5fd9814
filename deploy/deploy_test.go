// Package deploy holds deployment examples (nginx, Traefik, Kubernetes, Istio, the demo
// policy); its test parses every Kubernetes and Istio manifest strictly into the real API types,
// so a typo or a misplaced field fails CI.
package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// documents splits a multi-document YAML file.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// strict decodes YAML into v, refusing unknown and duplicate fields.
func strict(t *testing.T, doc []byte, v any) {
	t.Helper()
	require.NoError(t, yaml.UnmarshalStrict(doc, v), "%s", firstLines(doc))
}

func firstLines(doc []byte) string {
	lines := strings.SplitN(string(doc), "\n", 6)
	return strings.Join(lines[:min(len(lines), 5)], "\n")
}

// authzFlags is the flag contract (ARCHITECTURE.md plus the documented additions).
var authzFlags = []string{"issuer", "audience", "client-ids", "jwks-url", "algs", "leeway", "grpc-addr",
	"http-addr", "admin-addr", "allow-http-issuer", "policy", "realm", "cache-size", "tls-cert", "tls-key",
	"client-ca", "log-level", "http-path-prefix", "http-request-headers", "require-at-jwt", "shutdown-drain", "shutdown-timeout"}

// TestKubernetesManifests reads the plain manifest, which deploy/helm generates from the chart's
// defaults (its own test keeps the two equal and checks the chart further).
func TestKubernetesManifests(t *testing.T) {
	var (
		deploy   appsv1.Deployment
		svc      corev1.Service
		pdb      policyv1.PodDisruptionBudget
		hpa      autoscalingv2.HorizontalPodAutoscaler
		np       networkingv1.NetworkPolicy
		configs  = map[string]corev1.ConfigMap{}
		seenKind []string
	)
	for _, doc := range documents(t, "kubernetes/authz.yaml") {
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal(doc, &tm))
		if tm.Kind == "" {
			continue // the header's comments
		}
		seenKind = append(seenKind, tm.Kind)
		switch tm.Kind {
		case "Deployment":
			strict(t, doc, &deploy)
		case "Service":
			strict(t, doc, &svc)
		case "PodDisruptionBudget":
			strict(t, doc, &pdb)
		case "HorizontalPodAutoscaler":
			strict(t, doc, &hpa)
		case "NetworkPolicy":
			strict(t, doc, &np)
		case "ConfigMap":
			var cm corev1.ConfigMap
			strict(t, doc, &cm)
			configs[cm.Name] = cm
		default:
			t.Fatalf("unexpected kind %q", tm.Kind)
		}
	}
	for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "ConfigMap"} {
		assert.Contains(t, seenKind, k)
	}

	// Replicas are the autoscaler's: two or more.
	assert.Nil(t, deploy.Spec.Replicas, "replicas are left to the HorizontalPodAutoscaler")
	assert.GreaterOrEqual(t, *hpa.Spec.MinReplicas, int32(2), "two or more replicas")
	pod := deploy.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path, "readiness means keys loaded")
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.False(t, c.Resources.Requests.Cpu().IsZero(), "CPU request set")
	assert.False(t, c.Resources.Requests.Memory().IsZero(), "memory request set")
	require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
	assert.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.NotNil(t, c.SecurityContext.ReadOnlyRootFilesystem)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	assert.Equal(t, map[string]int32{"grpc": 9001, "http": 9002, "admin": 9003}, ports)
	for _, p := range svc.Spec.Ports {
		assert.Equal(t, ports[p.Name], p.Port, "service port %s", p.Name)
	}
	assert.Equal(t, deploy.Spec.Selector.MatchLabels, svc.Spec.Selector)
	assert.Equal(t, deploy.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels)
	assert.Equal(t, deploy.Spec.Selector.MatchLabels, np.Spec.PodSelector.MatchLabels, "the NetworkPolicy guards the pods")
	assert.Equal(t, deploy.Name, hpa.Spec.ScaleTargetRef.Name)

	// The environment names real flags, and the policy ConfigMap holds a valid policy.
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		flagName := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e.Name, "AUTHZ_")), "_", "-")
		assert.True(t, slices.Contains(authzFlags, flagName), "%s is not the twin of an authz flag", e.Name)
	}
	require.Len(t, pod.Volumes, 1)
	policyMap := configs[pod.Volumes[0].ConfigMap.Name]
	_, err := policy.Load([]byte(policyMap.Data["policy.yaml"]), []string{"default"})
	require.NoError(t, err)
	mount := c.VolumeMounts[0].MountPath
	assert.Equal(t, mount+"/policy.yaml", env["AUTHZ_POLICY"], "AUTHZ_POLICY points into the mounted ConfigMap")
}

func TestIstioManifests(t *testing.T) {
	// meshConfig fragment: Istio's own MeshConfig type.
	raw, err := os.ReadFile("istio/mesh-config.yaml")
	require.NoError(t, err)
	js, err := yaml.YAMLToJSON(raw)
	require.NoError(t, err)
	var mesh meshv1alpha1.MeshConfig
	require.NoError(t, protojson.Unmarshal(js, &mesh), "mesh-config.yaml must parse as Istio's MeshConfig")
	require.Len(t, mesh.GetExtensionProviders(), 1)
	prov := mesh.GetExtensionProviders()[0]
	grpcProv := prov.GetEnvoyExtAuthzGrpc()
	require.NotNil(t, grpcProv, "the provider uses envoyExtAuthzGrpc")
	assert.Equal(t, uint32(9001), grpcProv.GetPort())
	assert.False(t, grpcProv.GetFailOpen(), "fail closed")
	assert.Equal(t, "503", grpcProv.GetStatusOnError())

	// AuthorizationPolicy: the Kubernetes envelope strictly, the spec as Istio's type
	// (security.istio.io/v1 is an alias of the v1beta1 Go type).
	docs := documents(t, "istio/authorization-policy.yaml")
	require.Len(t, docs, 1)
	var obj struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              json.RawMessage `json:"spec"`
	}
	strict(t, docs[0], &obj)
	assert.Equal(t, "AuthorizationPolicy", obj.Kind)
	assert.Equal(t, "security.istio.io/v1", obj.APIVersion)
	var ap securityv1beta1.AuthorizationPolicy
	require.NoError(t, protojson.Unmarshal(obj.Spec, &ap), "the spec must parse as Istio's AuthorizationPolicy")
	assert.Equal(t, securityv1beta1.AuthorizationPolicy_CUSTOM, ap.GetAction())
	assert.Equal(t, prov.GetName(), ap.GetProvider().GetName(), "the policy names the mesh provider")
	var notPaths []string
	for _, r := range ap.GetRules() {
		for _, to := range r.GetTo() {
			notPaths = append(notPaths, to.GetOperation().GetNotPaths()...)
		}
	}
	assert.Contains(t, notPaths, "/healthz", "health routes are left alone")
}

func TestLoaderCatchesTypos(t *testing.T) {
	var d appsv1.Deployment
	assert.Error(t, yaml.UnmarshalStrict([]byte("kind: Deployment\nspec:\n  replica: 2\n"), &d))
	var mesh meshv1alpha1.MeshConfig
	assert.Error(t, protojson.Unmarshal([]byte(`{"extensionProviders":[{"name":"x","envoyExtAuthzGrpc":{"servce":"a"}}]}`), &mesh))
}
