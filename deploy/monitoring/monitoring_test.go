// Package monitoring holds the Prometheus alerting rules (alerts.yaml) and the Grafana dashboard
// (grafana-dashboard.json) for the authz service; this test holds them to what the service
// exports.
package monitoring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/devidp"
	"github.com/platformauth/envoy-okta-authz/devidp/devidptest"
	"github.com/platformauth/envoy-okta-authz/internal/authzcmd"
	"github.com/platformauth/envoy-okta-authz/internal/testenv"
)

// exported starts the service (with a Redis replay store that is down, so that its error
// counter is registered too), makes allowed and refused checks, and returns its admin address.
func exported(t *testing.T) (admin string) {
	t.Helper()
	idp, _ := devidptest.Start(t, devidp.Config{})
	addrs := []string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	dead := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- authzcmd.Main(ctx, []string{"--dev", "--issuer", idp.Issuer(), "--grpc-addr", addrs[0], "--http-addr", addrs[1],
			"--admin-addr", addrs[2], "--dpop-replay-store", "redis://" + dead},
			func(string) string { return "" }, io.Discard, io.Discard)
	}()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addrs[2] + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 15*time.Second, 20*time.Millisecond)

	tok, err := idp.Mint(devidp.TokenRequest{ClientID: "test-client", Scopes: []string{"messages:read"}})
	require.NoError(t, err)
	for _, auth := range []string{"Bearer " + tok, "Bearer " + tok, ""} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addrs[1]+"/api/messages", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}

	return addrs[2]
}

// TestAlertsAndDashboard runs the real thing: promtool (Prometheus's rule-file loader and
// PromQL parser) checks alerts.yaml; a real Prometheus scrapes the running service, evaluates
// every rule, and answers every dashboard query; and every metric an expression names has
// series from the service.
func TestAlertsAndDashboard(t *testing.T) {
	promtool, prometheus := testenv.Program(t, "prometheus", "promtool"), testenv.Program(t, "prometheus", "prometheus")
	// Read here too, so that go test's cache knows the result depends on the file.
	_, err := os.ReadFile("alerts.yaml")
	require.NoError(t, err)
	out, err := exec.Command(promtool, "check", "rules", "alerts.yaml").CombinedOutput()
	require.NoError(t, err, "promtool check rules alerts.yaml:\n%s", out)

	admin := exported(t)
	rules, err := filepath.Abs("alerts.yaml")
	require.NoError(t, err)
	dir := t.TempDir()
	conf := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\n"+
		"scrape_configs:\n  - job_name: authz\n    static_configs: [{targets: [%q]}]\n", rules, admin)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644))
	web := testenv.FreeAddr(t)
	cmd := exec.Command(prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", log.String())
		}
	})
	api := func(path string, q url.Values, v any) error {
		resp, err := http.Get("http://" + web + path + "?" + q.Encode())
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Status string          `json:"status"`
			Error  string          `json:"error"`
			Data   json.RawMessage `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		if body.Status != "success" {
			return fmt.Errorf("%s: %s", path, body.Error)
		}
		return json.Unmarshal(body.Data, v)
	}
	// Two scrapes of the service, and every rule evaluated once.
	type rule struct {
		Name, Query, Health, LastError string
	}
	var ruleList []rule
	require.Eventually(t, func() bool {
		var up struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		}
		if api("/api/v1/query", url.Values{"query": {`count_over_time(up{job="authz"}[1m]) >= 2`}}, &up) != nil || len(up.Result) == 0 {
			return false
		}
		var data struct {
			Groups []struct{ Rules []rule } `json:"groups"`
		}
		if api("/api/v1/rules", nil, &data) != nil || len(data.Groups) == 0 {
			return false
		}
		ruleList = data.Groups[0].Rules
		return !slices.ContainsFunc(ruleList, func(r rule) bool { return r.Health == "unknown" })
	}, 30*time.Second, 200*time.Millisecond, "prometheus scraped the service and evaluated the rules")

	checkNames := func(where, expr string) {
		names := metricNames(expr)
		assert.NotEmpty(t, names, "%s: %q", where, expr)
		for _, name := range names {
			var series []map[string]string
			require.NoError(t, api("/api/v1/series", url.Values{"match[]": {name}}, &series))
			assert.NotEmpty(t, series, "%s: %q names %s, which the service does not export", where, expr, name)
		}
	}
	var alerts []string
	for _, r := range ruleList {
		assert.Equal(t, "ok", r.Health, "rule %s: %s", r.Name, r.LastError)
		checkNames("alerts.yaml "+r.Name, r.Query)
		alerts = append(alerts, r.Name)
	}
	for _, want := range []string{"AuthzKeysNotRefreshed", "AuthzNoKeys", "AuthzUnavailable", "AuthzSlowChecks", "AuthzTokenCacheIneffective"} {
		assert.Contains(t, alerts, want)
	}

	data, err := os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(data, &dash))
	require.NotEmpty(t, dash.Panels)
	// Grafana's variables, as Grafana fills them in.
	vars := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			expr := vars.Replace(tg.Expr)
			var result json.RawMessage
			assert.NoError(t, api("/api/v1/query", url.Values{"query": {expr}}, &result), "panel %q", p.Title)
			checkNames("dashboard panel "+p.Title, expr)
		}
	}
}

// What PromQL may hold besides metric names: strings, label matchers, ranges, grouping clauses,
// function calls, numbers and keywords. promtool and Prometheus check the syntax; this only
// finds the names.
var (
	promqlNoise = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	keywords    = []string{"and", "or", "unless", "bool", "offset", "inf", "nan"}
)

// metricNames returns the metric names an expression selects.
func metricNames(expr string) []string {
	var names []string
	for _, m := range promqlIdent.FindAllString(promqlNoise.ReplaceAllString(expr, " "), -1) {
		name := strings.TrimSpace(m)
		if strings.HasSuffix(name, "(") || slices.Contains(keywords, strings.ToLower(name)) {
			continue // a function or aggregation, or a keyword
		}
		names = append(names, name)
	}
	return names
}
