package helm

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite ../kubernetes/authz.yaml from the chart's defaults")

// plainManifest is deploy/kubernetes/authz.yaml: the chart rendered with its defaults and the
// example issuer, for kubectl apply without Helm.
const plainManifest = "../kubernetes/authz.yaml"

const plainHeader = `# The authz service on Kubernetes without Helm: the chart deploy/helm/envoy-okta-authz rendered
# with its defaults, as
#   helm template authz deploy/helm/envoy-okta-authz --set issuer=https://example.okta.com/oauth2/default --set audience=api://default
# Set AUTHZ_ISSUER and AUTHZ_AUDIENCE in the Deployment (or render the chart with your values),
# then kubectl apply -f deploy/kubernetes/. Generated: go -C deploy/helm test -run TestPlainManifest -update
`

// TestPlainManifestIsTheChartDefaults keeps the plain manifest equal to the chart's defaults by
// generating it: a difference fails until the file is regenerated.
func TestPlainManifestIsTheChartDefaults(t *testing.T) {
	rel := mustRenderIn(t, "authz", "default", minimal...)
	want := plainHeader + strings.TrimSpace(rel.Manifest) + "\n"
	if *update {
		require.NoError(t, os.WriteFile(plainManifest, []byte(want), 0o644))
	}
	assert.Equal(t, want, string(readFile(t, plainManifest)),
		"deploy/kubernetes/authz.yaml is not the chart's defaults: go -C deploy/helm test -run TestPlainManifest -update")
}
