package helm

import (
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/action"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/platformauth/envoy-okta-authz/policy"
)

// minimal is what docs/kubernetes.md's helm install sets: an issuer and an audience.
var minimal = []string{"issuer=https://example.okta.com/oauth2/default", "audience=api://default"}

// valueSets are the configurations the chart is rendered and cross-checked with.
var valueSets = map[string][]string{
	"defaults": minimal,
	"introspection, Redis and mutual TLS": append(slices.Clone(minimal),
		"introspection.mode=always", "introspection.auth=client_secret_basic", "introspection.clientId=authz-service",
		"introspection.clientSecret.existingSecret=authz-introspection", "introspection.cacheTTL=30s", "introspection.timeout=1s",
		"introspection.cacheSize=50000",
		"dpop.replayStore.existingSecret=authz-redis", "tls.existingSecret=authz-tls", "tls.clientCA.existingSecret=envoy-client-ca"),
	"introspection secrets as files": append(slices.Clone(minimal),
		"introspection.mode=opaque", "introspection.url=https://example.okta.com/oauth2/default/v1/introspect",
		"introspection.auth=private_key_jwt", "introspection.clientId=authz-service",
		"introspection.privateKey.existingSecret=authz-jwk", "introspection.clientSecret.existingSecret=authz-introspection",
		"introspection.clientSecret.asFile=true", "introspection.clientSecret.key=secret"),
	"network policy off":        append(slices.Clone(minimal), "networkPolicy.enabled=false"),
	"existing policy ConfigMap": append(slices.Clone(minimal), "policy.existingConfigMap=team-policy", "policy.key=rules.yaml"),
	"no policy":                 append(slices.Clone(minimal), "policy.inline="),
	"monitoring": append(slices.Clone(minimal), "serviceMonitor.enabled=true", "serviceMonitor.labels.release=kube-prometheus-stack",
		"prometheusRule.enabled=true", "prometheusRule.labels.release=kube-prometheus-stack"),
	"fixed replicas, named callers, egress": append(slices.Clone(minimal), "autoscaling.enabled=false", "replicaCount=3",
		"audience={api://default,api://orders}", "clientIds={spa,batch}",
		"networkPolicy.grpcFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=envoy-gateway-system",
		"networkPolicy.httpFrom=null",
		"networkPolicy.egress[0].to[0].ipBlock.cidr=0.0.0.0/0", "networkPolicy.egress[0].ports[0].port=443"),
	"extras": append(slices.Clone(minimal), "fullnameOverride=okta-authz", "logLevel=debug", "maxConnections=4096",
		"extraArgs={--decision-log,all}", "extraEnv[0].name=OTEL_SERVICE_NAME", "extraEnv[0].value=authz",
		"podAnnotations.team=platform", "podLabels.tier=auth", "nodeSelector.pool=system",
		"tolerations[0].key=dedicated", "tolerations[0].operator=Exists", "priorityClassName=system-cluster-critical",
		"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
		"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
		"shutdown.drainSeconds=20", "shutdown.timeoutSeconds=15", "shutdown.marginSeconds=5",
		"image.repository=registry.example.com/envoy-okta-authz", "image.tag=abc1234", "imagePullSecrets[0].name=registry"),
}

// secretEnv are the variables whose values come from a Secret, never from values.
var secretEnv = []string{"AUTHZ_INTROSPECTION_CLIENT_SECRET", "AUTHZ_DPOP_REPLAY_STORE"}

func TestChartRendersValidGuardedDeployments(t *testing.T) {
	flags := serviceFlags(t)
	for _, name := range slices.Sorted(maps.Keys(valueSets)) {
		set := valueSets[name]
		t.Run(name, func(t *testing.T) {
			rel := mustRender(t, set...)
			o := decodeAll(t, rel.Manifest)
			vals := mergedValues(t, set)
			checkWorkload(t, o, vals)
			env := checkEnvironment(t, o, vals, flags)
			checkMounts(t, o, vals, env)
			checkGuards(t, o, vals)
			checkServiceAccepts(t, o, env)
		})
	}
}

// mergedValues are a value set merged over the chart's defaults, as the templates see them.
func mergedValues(t *testing.T, set []string) map[string]any {
	t.Helper()
	var defaults map[string]any
	require.NoError(t, yaml.Unmarshal(readFile(t, filepath.Join(chartDir, "values.yaml")), &defaults))
	rel := mustRender(t, set...)
	// The release's Config holds what the user set; merge it over the defaults the way Helm does
	// for maps (a user's null deletes the key).
	return merge(defaults, rel.Config)
}

func merge(base, over map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, v := range over {
		bm, bok := out[k].(map[string]any)
		om, ook := v.(map[string]any)
		switch {
		case v == nil:
			delete(out, k)
		case bok && ook:
			out[k] = merge(bm, om)
		default:
			out[k] = v
		}
	}
	return out
}

// get reads a dotted path of the merged values ("" when absent).
func get(vals map[string]any, dotted string) any {
	var cur any = vals
	for _, k := range strings.Split(dotted, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func getString(vals map[string]any, dotted string) string {
	s, _ := get(vals, dotted).(string)
	return s
}

// getInt reads a number: float64 from values.yaml, int64 from --set.
func getInt(vals map[string]any, dotted string) int64 {
	switch v := get(vals, dotted).(type) {
	case float64:
		return int64(v)
	case int64:
		return v
	}
	return 0
}

func getBool(vals map[string]any, dotted string) bool {
	b, _ := get(vals, dotted).(bool)
	return b
}

// checkWorkload: what deploy/kubernetes/authz.yaml always promised — replicas spread across
// nodes, probes on the admin port, non-root, read-only, no privilege, PDB, HPA, resources — and
// every selector matching the pods.
func checkWorkload(t *testing.T, o objects, vals map[string]any) {
	t.Helper()
	require.Len(t, o.Deployments, 1)
	require.Len(t, o.Services, 1)
	d, svc := o.Deployments[0], o.Services[0]
	sel := d.Spec.Selector.MatchLabels
	require.NotEmpty(t, sel)
	for k, v := range sel {
		assert.Equal(t, v, d.Spec.Template.Labels[k], "pod label %s matches the selector", k)
	}
	assert.Equal(t, sel, svc.Spec.Selector, "the Service selects the pods")
	assert.Equal(t, sel, svc.Labels, "the Service carries the labels a ServiceMonitor selects")
	wantName := "authz"
	if n := getString(vals, "fullnameOverride"); n != "" {
		wantName = n
	}
	assert.Equal(t, wantName, d.Name)
	assert.Equal(t, wantName, svc.Name)

	pod := d.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.Equal(t, getString(vals, "image.repository")+":"+getString(vals, "image.tag"), c.Image)
	var pullSecrets []string
	for _, s := range get(vals, "imagePullSecrets").([]any) {
		pullSecrets = append(pullSecrets, s.(map[string]any)["name"].(string))
	}
	var gotPullSecrets []string
	for _, s := range pod.ImagePullSecrets {
		gotPullSecrets = append(gotPullSecrets, s.Name)
	}
	assert.Equal(t, pullSecrets, gotPullSecrets)

	// Replicas: the HPA's minimum, or the fixed count; two or more by default.
	if getBool(vals, "autoscaling.enabled") {
		assert.Nil(t, d.Spec.Replicas, "with an HPA the Deployment leaves replicas to it")
		require.Len(t, o.HPAs, 1)
		hpa := o.HPAs[0]
		assert.Equal(t, "Deployment", hpa.Spec.ScaleTargetRef.Kind)
		assert.Equal(t, d.Name, hpa.Spec.ScaleTargetRef.Name)
		assert.GreaterOrEqual(t, *hpa.Spec.MinReplicas, int32(2))
		assert.Greater(t, hpa.Spec.MaxReplicas, *hpa.Spec.MinReplicas)
	} else {
		assert.Empty(t, o.HPAs)
		require.NotNil(t, d.Spec.Replicas)
		assert.EqualValues(t, getInt(vals, "replicaCount"), *d.Spec.Replicas)
	}
	require.Len(t, o.PDBs, 1)
	assert.Equal(t, sel, o.PDBs[0].Spec.Selector.MatchLabels)
	assert.Equal(t, intstr.FromInt32(1), *o.PDBs[0].Spec.MinAvailable)
	require.NotEmpty(t, pod.TopologySpreadConstraints, "replicas spread across nodes")
	for _, tsc := range pod.TopologySpreadConstraints {
		assert.Equal(t, "kubernetes.io/hostname", tsc.TopologyKey)
		assert.Equal(t, sel, tsc.LabelSelector.MatchLabels, "the spread counts this release's pods")
	}

	// Ports, and the Service's ports naming the container's.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	assert.Equal(t, map[string]int32{"grpc": 9001, "http": 9002, "admin": 9003}, ports)
	for _, p := range svc.Spec.Ports {
		assert.Equal(t, ports[p.Name], p.Port, "service port %s", p.Name)
		assert.Equal(t, intstr.FromString(p.Name), p.TargetPort, "service port %s targets the named container port", p.Name)
	}
	assert.Equal(t, "grpc", *svc.Spec.Ports[0].AppProtocol, "gateways speak HTTP/2 to the gRPC port")

	// Probes: readiness means keys loaded, both on the admin port (plain HTTP even with TLS).
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		assert.Equal(t, intstr.FromString("admin"), p.HTTPGet.Port)
		assert.Empty(t, p.HTTPGet.Scheme, "probes speak plain HTTP")
	}
	assert.Nil(t, c.Lifecycle, "no preStop: the distroless image has no shell; the service drains on SIGTERM")

	// Hardening.
	psc, csc := pod.SecurityContext, c.SecurityContext
	assert.True(t, *psc.RunAsNonRoot)
	assert.EqualValues(t, 65532, *psc.RunAsUser)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)
	assert.True(t, *csc.ReadOnlyRootFilesystem)
	assert.False(t, *csc.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, csc.Capabilities.Drop)
	assert.False(t, *pod.AutomountServiceAccountToken, "the service never talks to the Kubernetes API")
	assert.False(t, *pod.EnableServiceLinks, "service-link variables would share the AUTHZ_ prefix")
	assert.False(t, c.Resources.Requests.Cpu().IsZero(), "CPU request set")
	assert.False(t, c.Resources.Requests.Memory().IsZero(), "memory request set")
	assert.False(t, c.Resources.Limits.Memory().IsZero(), "memory limit set")
}

// checkEnvironment: every variable is a setting the service knows, secrets come from Secrets,
// and the grace period covers the drain. It returns the environment as the service would see it
// (secrets replaced by stand-ins).
func checkEnvironment(t *testing.T, o objects, vals map[string]any, flags map[string]bool) map[string]string {
	t.Helper()
	c := o.Deployments[0].Spec.Template.Spec.Containers[0]
	extra := map[string]bool{}
	for _, e := range get(vals, "extraEnv").([]any) {
		extra[e.(map[string]any)["name"].(string)] = true
	}
	env := map[string]string{}
	for _, e := range c.Env {
		assert.NotContains(t, env, e.Name, "%s set twice", e.Name)
		if extra[e.Name] {
			env[e.Name] = e.Value
			continue
		}
		flag, ok := flagOfEnv(e.Name)
		require.True(t, ok, "%s is not an AUTHZ_ variable", e.Name)
		known := flags[flag] || slices.Contains(envOnly, e.Name)
		assert.True(t, known, "%s is not the twin of a flag of authz --help", e.Name)
		if slices.Contains(secretEnv, e.Name) {
			require.NotNil(t, e.ValueFrom, "%s comes from a Secret", e.Name)
			require.NotNil(t, e.ValueFrom.SecretKeyRef, "%s comes from a Secret", e.Name)
			assert.Empty(t, e.Value, "%s is never a value in clear", e.Name)
			ref := e.ValueFrom.SecretKeyRef
			switch e.Name {
			case "AUTHZ_DPOP_REPLAY_STORE":
				assert.Equal(t, getString(vals, "dpop.replayStore.existingSecret"), ref.Name)
				assert.Equal(t, getString(vals, "dpop.replayStore.key"), ref.Key)
				env[e.Name] = "redis://redis.apps.svc:6379/0"
			default:
				assert.Equal(t, getString(vals, "introspection.clientSecret.existingSecret"), ref.Name)
				assert.Equal(t, getString(vals, "introspection.clientSecret.key"), ref.Key)
				env[e.Name] = "stand-in"
			}
			continue
		}
		assert.Nil(t, e.ValueFrom, "%s", e.Name)
		env[e.Name] = e.Value
	}
	assert.Equal(t, getString(vals, "issuer"), env["AUTHZ_ISSUER"])
	assert.NotEmpty(t, env["AUTHZ_AUDIENCE"])
	var args []string
	for _, a := range get(vals, "extraArgs").([]any) {
		args = append(args, a.(string))
	}
	assert.Equal(t, args, c.Args, "extraArgs are the container's arguments")

	// The drain and timeout the service is told fit in the grace period, with the margin.
	drain, err := time.ParseDuration(env["AUTHZ_SHUTDOWN_DRAIN"])
	require.NoError(t, err)
	stop, err := time.ParseDuration(env["AUTHZ_SHUTDOWN_TIMEOUT"])
	require.NoError(t, err)
	grace := time.Duration(*o.Deployments[0].Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	margin := time.Duration(getInt(vals, "shutdown.marginSeconds")) * time.Second
	assert.Equal(t, drain+stop+margin, grace, "terminationGracePeriodSeconds = drain + timeout + margin")
	assert.GreaterOrEqual(t, grace, drain+stop+time.Second)
	return env
}

// checkMounts: each file the environment names lies in a mounted volume that holds it, and each
// volume names a ConfigMap the chart renders or a ConfigMap or Secret the values name.
func checkMounts(t *testing.T, o objects, vals map[string]any, env map[string]string) {
	t.Helper()
	pod := o.Deployments[0].Spec.Template.Spec
	c := pod.Containers[0]
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	assert.Len(t, c.VolumeMounts, len(pod.Volumes), "every volume is mounted")
	// files: path in the container → the ConfigMap or Secret key that fills it.
	files := map[string]string{}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		require.True(t, ok, "mount %s names a volume", m.Name)
		assert.True(t, m.ReadOnly)
		assert.Empty(t, m.SubPath, "subPath mounts never see the kubelet's updates")
		switch {
		case v.ConfigMap != nil:
			require.NotEmpty(t, v.ConfigMap.Items)
			for _, it := range v.ConfigMap.Items {
				files[path.Join(m.MountPath, it.Path)] = "ConfigMap " + v.ConfigMap.Name + " " + it.Key
			}
		case v.Secret != nil:
			require.NotEmpty(t, v.Secret.Items)
			for _, it := range v.Secret.Items {
				files[path.Join(m.MountPath, it.Path)] = "Secret " + v.Secret.SecretName + " " + it.Key
			}
		default:
			t.Errorf("volume %s is neither a ConfigMap nor a Secret", v.Name)
		}
	}
	rendered := map[string]corev1.ConfigMap{}
	for _, cm := range o.ConfigMaps {
		rendered[cm.Name] = cm
	}
	// The files the service is pointed at, and where each must come from.
	want := map[string]string{}
	if p := env["AUTHZ_POLICY"]; p != "" {
		name, key := getString(vals, "policy.existingConfigMap"), getString(vals, "policy.key")
		if name == "" {
			name = o.Deployments[0].Name + "-policy"
			cm, ok := rendered[name]
			require.True(t, ok, "the chart renders the policy ConfigMap %s", name)
			_, err := policy.Load([]byte(cm.Data[key]), []string{"default"})
			assert.NoError(t, err, "the inline policy is one the service loads")
		} else {
			assert.NotContains(t, rendered, name, "an existing ConfigMap is not rendered")
		}
		want[p] = "ConfigMap " + name + " " + key
	} else {
		assert.Empty(t, getString(vals, "policy.inline")+getString(vals, "policy.existingConfigMap"), "a policy is configured but not passed")
		assert.Empty(t, o.ConfigMaps)
	}
	if tls := getString(vals, "tls.existingSecret"); tls != "" {
		want[env["AUTHZ_TLS_CERT"]] = "Secret " + tls + " tls.crt"
		want[env["AUTHZ_TLS_KEY"]] = "Secret " + tls + " tls.key"
	}
	if ca := getString(vals, "tls.clientCA.existingSecret"); ca != "" {
		want[env["AUTHZ_CLIENT_CA"]] = "Secret " + ca + " " + getString(vals, "tls.clientCA.key")
	}
	if s := getString(vals, "introspection.clientSecret.existingSecret"); s != "" && getBool(vals, "introspection.clientSecret.asFile") {
		want[env["AUTHZ_INTROSPECTION_CLIENT_SECRET_FILE"]] = "Secret " + s + " " + getString(vals, "introspection.clientSecret.key")
		assert.NotContains(t, env, "AUTHZ_INTROSPECTION_CLIENT_SECRET", "as a file, the secret is not in the environment too")
	}
	if s := getString(vals, "introspection.privateKey.existingSecret"); s != "" {
		want[env["AUTHZ_INTROSPECTION_KEY_FILE"]] = "Secret " + s + " " + getString(vals, "introspection.privateKey.key")
	}
	assert.Equal(t, want, files, "the files the service reads are the mounted ones, from the named objects")
}

// checkGuards: the NetworkPolicy admits exactly the peers the values name on each port (never
// everyone through an empty rule), and the monitoring objects select the Service's pods.
func checkGuards(t *testing.T, o objects, vals map[string]any) {
	t.Helper()
	d := o.Deployments[0]
	sel := d.Spec.Selector.MatchLabels
	if !getBool(vals, "networkPolicy.enabled") {
		assert.Empty(t, o.NetworkPolicies)
	} else {
		require.Len(t, o.NetworkPolicies, 1)
		np := o.NetworkPolicies[0]
		assert.Equal(t, sel, np.Spec.PodSelector.MatchLabels, "the policy guards this release's pods")
		byPort := map[int32]any{}
		for _, rule := range np.Spec.Ingress {
			require.NotEmpty(t, rule.From, "a rule without peers admits everyone")
			require.Len(t, rule.Ports, 1)
			port := rule.Ports[0].Port.IntVal
			peers, err := yaml.Marshal(rule.From)
			require.NoError(t, err)
			var asValues any
			require.NoError(t, yaml.Unmarshal(peers, &asValues))
			byPort[port] = asValues
		}
		want := map[int32]any{}
		for port, key := range map[int32]string{9001: "grpcFrom", 9002: "httpFrom", 9003: "adminFrom"} {
			if peers, _ := get(vals, "networkPolicy."+key).([]any); len(peers) > 0 {
				want[port] = peers
			}
		}
		assert.Equal(t, want, byPort, "each port admits the peers its value names, and no port is open to all")
		egress, _ := get(vals, "networkPolicy.egress").([]any)
		hasEgress := slices.Contains(np.Spec.PolicyTypes, "Egress")
		assert.Equal(t, len(egress) > 0, hasEgress, "egress is restricted only when rules are given")
		if hasEgress {
			assert.Len(t, np.Spec.Egress, len(egress)+1, "the given rules, plus DNS")
			assert.EqualValues(t, 53, np.Spec.Egress[0].Ports[0].Port.IntVal)
		}
	}

	if getBool(vals, "serviceMonitor.enabled") {
		require.Len(t, o.ServiceMonitors, 1)
		sm := o.ServiceMonitors[0]
		for k, v := range sm.Spec.Selector.MatchLabels {
			assert.Equal(t, v, o.Services[0].Labels[k], "the ServiceMonitor selects the Service")
		}
		require.Len(t, sm.Spec.Endpoints, 1)
		assert.Equal(t, "admin", sm.Spec.Endpoints[0].Port)
		assert.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)
		assert.Equal(t, "kube-prometheus-stack", sm.Labels["release"], "the labels Prometheus selects by")
	} else {
		assert.Empty(t, o.ServiceMonitors)
	}
	if getBool(vals, "prometheusRule.enabled") {
		require.Len(t, o.PrometheusRules, 1)
	} else {
		assert.Empty(t, o.PrometheusRules)
	}
}

// checkServiceAccepts runs the service's own configuration check with the rendered environment
// and the rendered policy in place of the mounted one.
func checkServiceAccepts(t *testing.T, o objects, env map[string]string) {
	t.Helper()
	env = maps.Clone(env)
	if p := env["AUTHZ_POLICY"]; p != "" {
		var policy string
		for _, cm := range o.ConfigMaps {
			policy = cm.Data["policy.yaml"]
		}
		if policy == "" {
			policy = "rules: []\n" // an existing ConfigMap: its content is the operator's
		}
		local := filepath.Join(t.TempDir(), "policy.yaml")
		require.NoError(t, os.WriteFile(local, []byte(policy), 0o600))
		env["AUTHZ_POLICY"] = local
	}
	for _, name := range []string{"AUTHZ_TLS_CERT", "AUTHZ_TLS_KEY", "AUTHZ_CLIENT_CA"} {
		if env[name] != "" {
			env[name] = filepath.Join(t.TempDir(), filepath.Base(env[name])) // paired is what it checks
		}
	}
	code, out := checkConfig(env)
	assert.Equal(t, 0, code, "authz --check-config with the rendered environment:\n%s", out)
}

func TestChartLints(t *testing.T) {
	for _, name := range []string{"defaults", "introspection, Redis and mutual TLS", "monitoring"} {
		t.Run(name, func(t *testing.T) {
			vals := mergedValues(t, valueSets[name])
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = "apps"
			result := lint.Run([]string{chartDir}, vals)
			assert.Equal(t, 1, result.TotalChartsLinted)
			for _, m := range result.Messages {
				t.Log(m.Error())
			}
			assert.Empty(t, result.Errors, "helm lint --strict")
		})
	}
}

// TestBadValuesAreRefused: values of the wrong type or shape fail rendering with a message that
// names the setting.
func TestBadValuesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"no issuer", []string{"audience=api://default"}, "issuer is required: --set issuer="},
		{"replicas not a number", append(slices.Clone(minimal), "replicaCount=many"), "/replicaCount"},
		{"issuer not a URL", []string{"issuer=example.okta.com"}, "/issuer"},
		{"unknown log level", append(slices.Clone(minimal), "logLevel=verbose"), "/logLevel"},
		{"unknown introspection mode", append(slices.Clone(minimal), "introspection.mode=sometimes"), "/introspection/mode"},
		{"a secret in clear", append(slices.Clone(minimal), "introspection.clientSecret.value=hunter2"), "/introspection/clientSecret"},
		{"a secret's variable with a value", append(slices.Clone(minimal), "extraEnv[0].name=AUTHZ_INTROSPECTION_CLIENT_SECRET", "extraEnv[0].value=hunter2"), "/extraEnv/0"},
		{"a Redis password in a variable's value", append(slices.Clone(minimal), "extraEnv[0].name=AUTHZ_DPOP_REPLAY_STORE", "extraEnv[0].value=redis://:pw@redis:6379"), "/extraEnv/0"},
		{"a Redis password in a flag", append(slices.Clone(minimal), "extraArgs[0]=--dpop-replay-store=redis://:pw@redis:6379"), "/extraArgs/0"},
		{"a misspelt setting", append(slices.Clone(minimal), "replicaCont=3"), "replicaCont"},
		{"negative drain", append(slices.Clone(minimal), "shutdown.drainSeconds=-1"), "/shutdown/drainSeconds"},
		{"a duration without a unit", append(slices.Clone(minimal), "introspection.cacheTTL=30"), "/introspection/cacheTTL"},
		{"client CA without TLS", append(slices.Clone(minimal), "tls.clientCA.existingSecret=ca"), "tls.clientCA.existingSecret needs tls.existingSecret"},
		{"a file without its Secret", append(slices.Clone(minimal), "introspection.clientSecret.asFile=true"), "needs introspection.clientSecret.existingSecret"},
		{"a PDB that blocks drains", append(slices.Clone(minimal), "autoscaling.enabled=false", "replicaCount=1"), "would block every node drain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render("authz", "apps", tc.set...)
			require.Error(t, err)
			t.Log(err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestPrometheusRuleIsTheAlertsFile: the chart carries a copy of deploy/monitoring/alerts.yaml
// (a chart cannot read outside its directory, and a symlink out of it is refused by tools such
// as Argo CD); the copy must equal the file deploy/monitoring's test runs through Prometheus, and
// the PrometheusRule must hold exactly its groups.
func TestPrometheusRuleIsTheAlertsFile(t *testing.T) {
	source := readFile(t, "../monitoring/alerts.yaml")
	require.Equal(t, string(source), string(readFile(t, filepath.Join(chartDir, "files/alerts.yaml"))),
		"envoy-okta-authz/files/alerts.yaml differs from deploy/monitoring/alerts.yaml: cp deploy/monitoring/alerts.yaml deploy/helm/envoy-okta-authz/files/")
	o := decodeAll(t, mustRender(t, valueSets["monitoring"]...).Manifest)
	require.Len(t, o.PrometheusRules, 1)
	var file struct {
		Groups []any `json:"groups"`
	}
	require.NoError(t, yaml.UnmarshalStrict(source, &file))
	rendered, err := yaml.Marshal(o.PrometheusRules[0].Spec.Groups)
	require.NoError(t, err)
	var got []any
	require.NoError(t, yaml.Unmarshal(rendered, &got))
	assert.Equal(t, file.Groups, got, "the PrometheusRule's groups are alerts.yaml's")
	assert.Contains(t, string(rendered), "{{ $labels.issuer }}", "alert templates reach Prometheus unexpanded")
}
