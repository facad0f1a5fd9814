package envoy

import (
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loadCompose loads docker-compose.yml with the compose project's own loader (schema validation,
// interpolation of ${VAR:-default} from env), as `docker compose` would.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"},
		cli.WithWorkingDirectory(".."), cli.WithEnv(envList), cli.WithName("envoy-okta-authz"))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err, "docker-compose.yml must load with compose's own loader")
	return p
}

func env(s types.ServiceConfig, name string) string {
	if v, ok := s.Environment[name]; ok && v != nil {
		return *v
	}
	return ""
}

// authzFlags is the flag contract of cmd/authz (ARCHITECTURE.md); every AUTHZ_* variable in the
// compose file must be the twin of one of them.
var authzFlags = []string{"issuer", "audience", "client-ids", "jwks-url", "algs", "leeway", "grpc-addr",
	"http-addr", "admin-addr", "allow-http-issuer", "policy"}

func TestComposeStack(t *testing.T) {
	p := loadCompose(t, nil)
	for _, name := range []string{"envoy", "authz", "demoapi", "devidp"} {
		_, err := p.GetService(name)
		require.NoError(t, err, "service %s", name)
	}
	envoySvc, _ := p.GetService("envoy")
	authz, _ := p.GetService("authz")
	demo, _ := p.GetService("demoapi")
	idp, _ := p.GetService("devidp")

	assert.Equal(t, "envoyproxy/envoy:v1.38-latest", envoySvc.Image)
	require.NotEmpty(t, envoySvc.Volumes)
	assert.True(t, strings.HasSuffix(envoySvc.Volumes[0].Source, "envoy/envoy.yaml"), "Envoy reads envoy/envoy.yaml")
	assert.Equal(t, "/etc/envoy/envoy.yaml", envoySvc.Volumes[0].Target)

	// Only Envoy's port and the dev issuer's are published.
	published := map[string][]uint32{}
	for _, s := range p.Services {
		for _, port := range s.Ports {
			published[s.Name] = append(published[s.Name], port.Target)
		}
	}
	assert.Equal(t, map[string][]uint32{"envoy": {8080}, "devidp": {9400}}, published)

	// The authz service and Envoy agree on the gRPC port; every AUTHZ_* is a real flag.
	_, grpcPort, err := net.SplitHostPort(env(authz, "AUTHZ_GRPC_ADDR"))
	require.NoError(t, err)
	fp := parseFrontProxy(t, "envoy.yaml")
	assert.Equal(t, grpcPort, portString(fp.port(t, "authz")))
	assert.Equal(t, "authz", clusterHost(fp, "authz"), "Envoy's authz cluster is the compose service")
	assert.Equal(t, "demoapi", clusterHost(fp, "demoapi"), "Envoy's demoapi cluster is the compose service")
	_, demoPort, err := net.SplitHostPort(env(demo, "DEMOAPI_ADDR"))
	require.NoError(t, err)
	assert.Equal(t, demoPort, portString(fp.port(t, "demoapi")))
	for name := range authz.Environment {
		flagName := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "AUTHZ_")), "_", "-")
		assert.True(t, slices.Contains(authzFlags, flagName), "%s is not the twin of an authz flag", name)
	}

	// With no settings the stack uses the dev issuer, with one issuer URL on both sides.
	assert.Equal(t, "http://devidp:9400/oauth2/default", env(authz, "AUTHZ_ISSUER"))
	assert.Equal(t, env(authz, "AUTHZ_ISSUER"), env(idp, "DEVIDP_ISSUER"))
	assert.Equal(t, "api://default", env(authz, "AUTHZ_AUDIENCE"))

	// Start-up order follows health, so Envoy never fronts a service that cannot decide.
	assert.Equal(t, types.ServiceConditionHealthy, envoySvc.DependsOn["authz"].Condition)
	assert.Equal(t, types.ServiceConditionHealthy, envoySvc.DependsOn["demoapi"].Condition)
	assert.Equal(t, types.ServiceConditionHealthy, authz.DependsOn["devidp"].Condition)
	for _, s := range []types.ServiceConfig{authz, demo, idp} {
		require.NotNil(t, s.HealthCheck, "%s has a healthcheck", s.Name)
		assert.NotEmpty(t, s.HealthCheck.Test)
	}
	assert.Contains(t, strings.Join(authz.HealthCheck.Test, " "), "/readyz", "authz is healthy once keys are loaded")

	// The policy file the stack mounts loads, and names every policy Envoy's routes ask for.
	var policySource string
	for _, v := range authz.Volumes {
		if v.Target == env(authz, "AUTHZ_POLICY") {
			policySource = v.Source
		}
	}
	require.NotEmpty(t, policySource, "AUTHZ_POLICY is a mounted file")
	data, err := os.ReadFile(policySource)
	require.NoError(t, err)
	pol, err := policy.Load(data, []string{"default"})
	require.NoError(t, err)
	names := map[string]bool{}
	for _, r := range pol.Rules {
		names[r.Policy] = true
	}
	for _, path := range []string{"/api/messages", "/secure"} {
		policy := fp.perRoute(t, path).GetCheckSettings().GetContextExtensions()["policy"]
		assert.True(t, names[policy], "envoy route %s names policy %q, which the policy file must have", path, policy)
	}
}

func TestComposeSwitchesToOkta(t *testing.T) {
	p := loadCompose(t, map[string]string{
		"OKTA_ISSUER":             "https://dev-123.okta.com/oauth2/default",
		"OKTA_AUDIENCE":           "api://orders",
		"OKTA_CLIENT_IDS":         "0oa1,0oa2",
		"AUTHZ_ALLOW_HTTP_ISSUER": "false",
	})
	authz, err := p.GetService("authz")
	require.NoError(t, err)
	assert.Equal(t, "https://dev-123.okta.com/oauth2/default", env(authz, "AUTHZ_ISSUER"))
	assert.Equal(t, "api://orders", env(authz, "AUTHZ_AUDIENCE"))
	assert.Equal(t, "0oa1,0oa2", env(authz, "AUTHZ_CLIENT_IDS"))
	assert.Equal(t, "false", env(authz, "AUTHZ_ALLOW_HTTP_ISSUER"))
}

func clusterHost(fp *frontProxy, cluster string) string {
	return fp.Clusters[cluster].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
}

func portString(p uint32) string { return strconv.FormatUint(uint64(p), 10) }
