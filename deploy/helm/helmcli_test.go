package helm

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

// helmCLI runs the helm command this module pins (go.mod's tool directive: the same helm the
// docs run with `go tool helm`), with its configuration and cache in a temporary home.
func helmCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "helm"}, args...)...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home, "KUBECONFIG="+home+"/none")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// TestRenderIsHelmTemplate: what the tests check is what `helm template` prints, for the
// documented install and a value set that uses every part of the chart; and helm's own lint and
// schema check answer as the SDK does.
func TestRenderIsHelmTemplate(t *testing.T) {
	for _, name := range []string{"defaults", "introspection, Redis and mutual TLS", "monitoring", "fixed replicas, named callers, egress"} {
		t.Run(name, func(t *testing.T) {
			args := []string{"template", "authz", chartDir, "--namespace", "apps"}
			for _, s := range valueSets[name] {
				args = append(args, "--set", s)
			}
			out, err := helmCLI(t, args...)
			require.NoError(t, err, out)
			rel := mustRender(t, valueSets[name]...)
			assert.Equal(t, strings.TrimSpace(rel.Manifest)+"\n", out)
		})
	}

	out, err := helmCLI(t, "lint", chartDir, "--strict", "--set", minimal[0])
	require.NoError(t, err, out)
	assert.Contains(t, out, "0 chart(s) failed")

	out, err = helmCLI(t, "template", "authz", chartDir, "--set", minimal[0], "--set", "replicaCount=many")
	require.Error(t, err)
	assert.Contains(t, out, "at '/replicaCount': got string, want integer")
}

// TestNotesCarryTheIstioProvider: the NOTES' meshConfig snippet, rendered for release authz in
// namespace default, is deploy/istio/mesh-config.yaml's provider, and names the release's Service
// in other namespaces.
func TestNotesCarryTheIstioProvider(t *testing.T) {
	snippet := func(notes string) *meshv1alpha1.MeshConfig {
		t.Helper()
		_, after, ok := strings.Cut(notes, "# --- meshConfig ---\n")
		require.True(t, ok, notes)
		body, _, ok := strings.Cut(after, "# --- end ---")
		require.True(t, ok, notes)
		return parseMesh(t, []byte(body))
	}
	want := parseMesh(t, readFile(t, "../istio/mesh-config.yaml"))
	got := snippet(mustRenderIn(t, "authz", "default", minimal...).Info.Notes)
	assert.True(t, proto.Equal(want, got), "NOTES:\n%v\ndeploy/istio/mesh-config.yaml:\n%v", got, want)

	elsewhere := snippet(mustRenderIn(t, "okta", "security", minimal...).Info.Notes)
	assert.Equal(t, "okta.security.svc.cluster.local", elsewhere.GetExtensionProviders()[0].GetEnvoyExtAuthzGrpc().GetService())
}

// parseMesh parses a meshConfig fragment as Istio's own MeshConfig type (unknown fields fail).
func parseMesh(t *testing.T, data []byte) *meshv1alpha1.MeshConfig {
	t.Helper()
	js, err := yaml.YAMLToJSON(data)
	require.NoError(t, err)
	var mesh meshv1alpha1.MeshConfig
	require.NoError(t, protojson.Unmarshal(js, &mesh), "%s", data)
	require.Len(t, mesh.GetExtensionProviders(), 1)
	return &mesh
}
