package helm

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/cli/values"
	"helm.sh/helm/v4/pkg/getter"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwapiv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart, as `helm template NAME deploy/helm/envoy-okta-authz` names it.
const chartDir = "envoy-okta-authz"

// render runs what `helm template NAME envoy-okta-authz --namespace NS --set …` runs: the install
// action in client-only dry-run mode, with the --set values parsed by Helm's own parser. It
// returns the manifest helm template prints (hooks aside: the chart has none) and the NOTES.
func render(name, namespace string, set ...string) (*release.Release, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	vals, err := (&values.Options{Values: set}).MergeValues(getter.Providers{})
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = name
	install.Namespace = namespace
	install.Replace = true
	rel, err := install.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("install returned a %T", rel)
	}
	if len(r.Hooks) > 0 {
		return nil, fmt.Errorf("the chart has hooks, which helm template prints after the manifest: render must too")
	}
	return r, nil
}

// mustRender renders release authz in namespace apps and fails the test on an error.
func mustRender(t *testing.T, set ...string) *release.Release {
	t.Helper()
	return mustRenderIn(t, "authz", "apps", set...)
}

func mustRenderIn(t *testing.T, name, namespace string, set ...string) *release.Release {
	t.Helper()
	rel, err := render(name, namespace, set...)
	require.NoError(t, err)
	return rel
}

// objects is a rendered manifest decoded strictly, one field per kind the chart and the
// Envoy Gateway example may hold; a kind outside these fails the decoding.
type objects struct {
	Deployments      []appsv1.Deployment
	Services         []corev1.Service
	ConfigMaps       []corev1.ConfigMap
	Namespaces       []corev1.Namespace
	PDBs             []policyv1.PodDisruptionBudget
	HPAs             []autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies  []networkingv1.NetworkPolicy
	ServiceMonitors  []monitoringv1.ServiceMonitor
	PrometheusRules  []monitoringv1.PrometheusRule
	GatewayClasses   []gwapiv1.GatewayClass
	Gateways         []gwapiv1.Gateway
	HTTPRoutes       []gwapiv1.HTTPRoute
	ReferenceGrants  []gwapiv1beta1.ReferenceGrant
	SecurityPolicies []egv1a1.SecurityPolicy
	// Kinds in document order.
	Kinds []string
}

// decodeStrict decodes YAML into v, refusing unknown and duplicate fields.
func decodeStrict(doc []byte, v any) error {
	return yaml.UnmarshalStrict(doc, v)
}

// decodeAll splits a multi-document stream and decodes each document strictly into the API type
// its apiVersion and kind name.
func decodeAll(t *testing.T, stream string) objects {
	t.Helper()
	var o objects
	for _, doc := range splitDocuments(stream) {
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal(doc, &tm))
		gvk := tm.APIVersion + " " + tm.Kind
		o.Kinds = append(o.Kinds, tm.Kind)
		var err error
		switch gvk {
		case "apps/v1 Deployment":
			err = decodeInto(doc, &o.Deployments)
		case "v1 Service":
			err = decodeInto(doc, &o.Services)
		case "v1 ConfigMap":
			err = decodeInto(doc, &o.ConfigMaps)
		case "v1 Namespace":
			err = decodeInto(doc, &o.Namespaces)
		case "policy/v1 PodDisruptionBudget":
			err = decodeInto(doc, &o.PDBs)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			err = decodeInto(doc, &o.HPAs)
		case "networking.k8s.io/v1 NetworkPolicy":
			err = decodeInto(doc, &o.NetworkPolicies)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			err = decodeInto(doc, &o.ServiceMonitors)
		case "monitoring.coreos.com/v1 PrometheusRule":
			err = decodeInto(doc, &o.PrometheusRules)
		case "gateway.networking.k8s.io/v1 GatewayClass":
			err = decodeInto(doc, &o.GatewayClasses)
		case "gateway.networking.k8s.io/v1 Gateway":
			err = decodeInto(doc, &o.Gateways)
		case "gateway.networking.k8s.io/v1 HTTPRoute":
			err = decodeInto(doc, &o.HTTPRoutes)
		case "gateway.networking.k8s.io/v1beta1 ReferenceGrant":
			err = decodeInto(doc, &o.ReferenceGrants)
		case "gateway.envoyproxy.io/v1alpha1 SecurityPolicy":
			err = decodeInto(doc, &o.SecurityPolicies)
		default:
			err = fmt.Errorf("unexpected apiVersion and kind %q", gvk)
		}
		require.NoError(t, err, "%s", firstLines(doc))
	}
	return o
}

// decodeInto decodes one document strictly and appends it.
func decodeInto[T any](doc []byte, list *[]T) error {
	var v T
	if err := decodeStrict(doc, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// splitDocuments splits a YAML stream at its "---" lines, dropping documents that hold only
// comments or blanks (helm template's "# Source:" lines stay with their document).
func splitDocuments(stream string) [][]byte {
	var docs [][]byte
	for _, d := range strings.Split("\n"+stream, "\n---") {
		content := slices.ContainsFunc(strings.Split(d, "\n"), func(l string) bool {
			l = strings.TrimSpace(l)
			return l != "" && !strings.HasPrefix(l, "#")
		})
		if content {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func firstLines(doc []byte) string {
	lines := strings.SplitN(string(bytes.TrimSpace(doc)), "\n", 6)
	return strings.Join(lines[:min(len(lines), 5)], "\n")
}

// readFile reads a file of the repository, failing the test when it cannot.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}
