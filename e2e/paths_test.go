package e2e

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/platformauth/envoy-okta-authz/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/platformauth/envoy-okta-authz/envoy/envoytest"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/paths.txt from pathCorpus")

const corpusFile = "testdata/paths.txt"

// The demo API's protected handlers (Go ServeMux patterns) and what deploy/policy/demo.yaml
// requires to reach them.
var protectedHandlers = map[string]tokenKind{
	"GET /api/messages": reader,   // messages:read
	"GET /secure":       anyValid, // any valid token
}

type tokenKind int

const (
	noToken tokenKind = iota
	forged
	writer   // valid, messages:write only
	reader   // valid, messages:read
	anyValid // (a requirement, not a token)
)

func (k tokenKind) String() string {
	return [...]string{"no token", "forged token", "messages:write token", "messages:read token", "any valid token"}[k]
}

// satisfies reports whether a token of kind k meets requirement want.
func (k tokenKind) satisfies(want tokenKind) bool {
	switch want {
	case anyValid:
		return k == writer || k == reader
	case reader:
		return k == reader
	}
	return true
}

// TestPathCorpusIsCurrent keeps testdata/paths.txt what pathCorpus generates (-update-corpus
// rewrites it), so the corpus in review is the corpus tested.
func TestPathCorpusIsCurrent(t *testing.T) {
	want := formatCorpus(pathCorpus())
	if *updateCorpus {
		require.NoError(t, os.WriteFile(corpusFile, []byte(want), 0o644))
	}
	got, err := os.ReadFile(corpusFile)
	require.NoError(t, err)
	assert.Equal(t, want, string(got), "run go test ./e2e -run Corpus -update-corpus")
}

// TestPathSpellingsNeverReachAProtectedHandler is the differential test of path handling: every
// spelling in the corpus, with every kind of token, through real nginx (deploy/nginx/nginx.conf),
// through Traefik's forwardAuth with deploy/traefik/dynamic.yml (played in Go, from Traefik's
// source) and through the gRPC front end as Envoy sends it with envoy/envoy.yaml's path
// normalisation and without any, to three upstreams: the demo API (Go's ServeMux), the same
// routes in Express (case-insensitive, trailing slash optional) and in Java, routed as Spring
// MVC with case-insensitive, suffix pattern and trailing slash matching routes them (non-ASCII
// letters folded by the JDK's equalsIgnoreCase, "/x.json" served as "/x"). Whenever an upstream
// runs a protected handler, the request carried a token with what deploy/policy/demo.yaml
// requires for it; an identity header a client sent never arrives.
func TestPathSpellingsNeverReachAProtectedHandler(t *testing.T) {
	corpus := readCorpus(t)
	s := startStack(t, "../deploy/policy/demo.yaml")
	tokens := map[tokenKind]string{
		forged: func() string { tok := s.token(t, "messages:read"); return tok[:len(tok)-6] + "AAAAAA" }(),
		writer: s.token(t, "messages:write"),
		reader: s.token(t, "messages:read"),
	}
	o := &oracle{t: t, cases: map[string]oracleCase{}, reached: map[string]int{}}
	// The Go demo API reports the handler its ServeMux ran; Express names it in X-Handler.
	s.served.Store(ptr(func(r *http.Request, status int) {
		if status/100 != 3 { // a redirect to the clean path runs no handler (and is a new request)
			o.ran(r.Header.Get("X-Test-Case"), r.Pattern, r.Header)
		}
	}))
	upstreams := []struct{ name, addr string }{{"go", host(s.apiURL)}}
	if addr := startExpress(t); addr != "" {
		upstreams = append(upstreams, struct{ name, addr string }{"express", addr})
	}
	if addr := startJava(t); addr != "" {
		upstreams = append(upstreams, struct{ name, addr string }{"java", addr})
	}

	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	check := authv3.NewAuthorizationClient(conn)
	envoy, err := envoytest.Load("../envoy/envoy.yaml")
	require.NoError(t, err)
	traefik := loadTraefik(t, s.httpTraefikURL)

	for _, up := range upstreams {
		nginxAddr := host(startNginxFor(t, s, up.addr))
		outcomes := map[string]map[string]int{}
		count := func(proxy, outcome string) {
			if outcomes[proxy] == nil {
				outcomes[proxy] = map[string]int{}
			}
			outcomes[proxy][outcome]++
		}
		for i, target := range corpus {
			methods := []string{"GET"}
			if i%5 == 0 {
				methods = append(methods, "HEAD")
			}
			for _, method := range methods {
				for _, kind := range []tokenKind{noToken, forged, writer, reader} {
					header := http.Header{}
					if kind != noToken {
						header.Set("Authorization", "Bearer "+tokens[kind])
					}
					header.Set("X-Authz-Subject", "spoofed")
					header.Set("X-Authz-Scopes", "spoofed")

					// Real nginx, the shipped config.
					proxy := "nginx→" + up.name
					header.Set("X-Test-Case", o.add(proxy, method, target, kind))
					resp, err := rawRequest(nginxAddr, method, target, header)
					if err != nil {
						count(proxy, "connection error")
					} else {
						count(proxy, strconv.Itoa(resp.StatusCode))
						o.ran(header.Get("X-Test-Case"), resp.Header.Get("X-Handler"), resp.Header)
					}

					// Traefik's forwardAuth with deploy/traefik/dynamic.yml, played in Go.
					proxy = "traefik→" + up.name
					h := header.Clone()
					h.Set("X-Test-Case", o.add(proxy, method, target, kind))
					if resp, err := traefik.serve(t, up.addr, method, target, h); err != nil {
						count(proxy, "connection error")
					} else {
						count(proxy, strconv.Itoa(resp.StatusCode))
						o.ran(h.Get("X-Test-Case"), resp.Header.Get("X-Handler"), resp.Header)
					}

					// Envoy: the CheckRequest it would send, then the request it would route.
					for _, normalize := range []bool{true, false} {
						proxy := "envoy-raw→" + up.name
						if normalize {
							proxy = "envoy-normalised→" + up.name
						}
						h := header.Clone()
						h.Set("X-Test-Case", o.add(proxy, method, target, kind))
						outcome, resp := envoyRound(t, envoy, check, up.addr, method, target, normalize, h)
						count(proxy, outcome)
						if resp != nil {
							o.ran(h.Get("X-Test-Case"), resp.Header.Get("X-Handler"), resp.Header)
						}
					}
				}
			}
		}
		for _, proxy := range []string{"nginx→", "traefik→", "envoy-normalised→", "envoy-raw→"} {
			proxy += up.name
			t.Logf("%s: %d targets; answers %v; protected handlers run, with the right token: %d",
				proxy, len(corpus), sortedCounts(outcomes[proxy]), o.reached[proxy])
			assert.Positive(t, o.reached[proxy], "%s: the corpus must reach protected handlers legitimately too", proxy)
		}
	}
}

// oracle knows what each test case sent and checks what the upstream ran for it.
type oracle struct {
	t       *testing.T
	mu      sync.Mutex
	n       int
	cases   map[string]oracleCase // by X-Test-Case
	reached map[string]int        // proxy → protected handlers run (legitimately)
}

type oracleCase struct {
	proxy, desc string
	kind        tokenKind
}

// add registers a case and returns its X-Test-Case value.
func (o *oracle) add(proxy, method, target string, kind tokenKind) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n++
	id := strconv.Itoa(o.n)
	o.cases[id] = oracleCase{proxy, fmt.Sprintf("%s: %s %q with a %s", proxy, method, target, kind), kind}
	return id
}

// ran checks that handler (a Go ServeMux pattern or Express's X-Handler; empty when none ran)
// may run for case id, and that no client identity header reached it.
func (o *oracle) ran(id, handler string, header http.Header) {
	o.mu.Lock()
	c := o.cases[id]
	o.mu.Unlock()
	if header.Get("X-Authz-Subject") == "spoofed" || header.Get("X-Authz-Scopes") == "spoofed" || header.Get("X-Saw-Spoofed") == "1" {
		o.t.Errorf("%s: a client's identity header reached the upstream", c.desc)
	}
	want, protected := protectedHandlers[handler]
	if !protected {
		return
	}
	if !c.kind.satisfies(want) {
		o.t.Errorf("%s: the upstream ran %q (it needs a %s)", c.desc, handler, want)
		return
	}
	o.mu.Lock()
	o.reached[c.proxy]++
	o.mu.Unlock()
}

// startExpress runs e2e/express/server.js and returns its address; without node or the
// installed packages the test skips locally and fails in CI, where .ci/run installs them.
func startExpress(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat("express/node_modules/express")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			testenv.Missing(t, "Express", "node, and npm ci --prefix e2e/express")
		}
		t.Logf("Express upstream skipped (install node and run npm ci --prefix e2e/express): %v", err)
		return ""
	}
	return startUpstream(t, "express", exec.Command(node, "server.js"))
}

// startJava runs e2e/java/Upstream.java (the JDK runs a single source file) and returns its
// address; without a JDK the test skips it locally and fails in CI.
func startJava(t *testing.T) string {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		if os.Getenv("CI") != "" {
			testenv.Missing(t, "Java", "apt-get install -y default-jdk-headless")
		}
		t.Logf("Java upstream skipped (install a JDK, 11 or later): %v", err)
		return ""
	}
	return startUpstream(t, "java", exec.Command(java, "Upstream.java"))
}

// startUpstream starts cmd, an upstream that prints its port on the first line, and stops it
// when the test ends.
func startUpstream(t *testing.T, name string, cmd *exec.Cmd) string {
	t.Helper()
	cmd.Dir = name
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "%s did not start", name)
	return "127.0.0.1:" + strings.TrimSpace(line)
}

// envoyRound plays Envoy for one request with envoy/envoy.yaml: normalise the path as its
// connection manager says (or, without normalize, as an Envoy with none of those settings
// would), pick the route, ask Check over gRPC with the route's context_extensions unless the
// route disables ext_authz, apply the answer, forward to the API.
func envoyRound(t *testing.T, envoy *envoytest.Proxy, check authv3.AuthorizationClient, apiAddr, method, target string, normalize bool, header http.Header) (string, *http.Response) {
	path, ok := envoytest.NormalisePath(target, false, false, false)
	if normalize {
		path, ok = envoy.NormalisePath(target)
	}
	if !ok {
		return "400 by envoy", nil
	}
	route := envoy.Route(path)
	require.NotNil(t, route, "envoy.yaml routes every path (%s)", path)
	perRoute, err := envoytest.PerRoute(route)
	require.NoError(t, err)
	for _, h := range route.GetRequestHeadersToRemove() {
		header.Del(h)
	}
	if !perRoute.GetDisabled() {
		hs := map[string]string{":method": method, ":path": path, ":authority": "api.example", ":scheme": "http"}
		for k := range header {
			hs[strings.ToLower(k)] = strings.Join(header.Values(k), ",")
		}
		resp, err := check.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: path, Host: "api.example", Scheme: "http", Headers: hs,
			}},
			ContextExtensions: perRoute.GetCheckSettings().GetContextExtensions(),
		}})
		reply, err := envoy.ApplyCheckResponse(header, resp, err)
		require.NoError(t, err)
		if reply != nil {
			return strconv.Itoa(reply.Status), nil
		}
	}
	r, err := rawRequest(apiAddr, method, path, header)
	if err != nil {
		return "connection error", nil
	}
	return "forwarded " + strconv.Itoa(r.StatusCode), r
}

// rawRequest sends an HTTP/1.1 request whose target is exactly target (Go's client would
// clean it up) and reads the response.
func rawRequest(addr, method, target string, header http.Header) (*http.Response, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n", method, target)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

func ptr[T any](v T) *T { return &v }

func sortedCounts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(out, ", ")
}

// corpusEntry is a class heading or a target.
type corpusEntry struct{ class, target string }

// pathCorpus generates the spellings: each class of the path-confusion issue applied to the
// demo API's protected paths, and seeded random combinations of them.
func pathCorpus() []corpusEntry {
	var out []corpusEntry
	seen := map[string]bool{}
	class := func(name string) { out = append(out, corpusEntry{class: name}) }
	add := func(targets ...string) {
		for _, t := range targets {
			if !seen[t] && !strings.ContainsAny(t, "\r\n") {
				seen[t] = true
				out = append(out, corpusEntry{target: t})
			}
		}
	}
	protected := []string{"/api/messages", "/secure"}

	class("the plain paths")
	add("/api/messages", "/secure", "/healthz", "/", "/nope", "/api/messages?x=1")
	class("percent-encoded letters, lower- and upper-case hex")
	for _, p := range protected {
		for i := 1; i < len(p); i++ {
			if p[i] != '/' {
				add(p[:i]+fmt.Sprintf("%%%02x", p[i])+p[i+1:], p[:i]+fmt.Sprintf("%%%02X", p[i])+p[i+1:])
			}
		}
		add(encodeAll(p))
	}
	class("letter case")
	for _, p := range protected {
		add(strings.ToUpper(p), titleCase(p), strings.ToUpper(p[:2])+p[2:])
	}
	class("trailing slashes and dots")
	for _, p := range protected {
		add(p+"/", p+"//", p+"/.", p+"/./", p+"/%2e", p+".", p+"%2e", p+"%20", p+"/..", p+"/x/..")
	}
	class("repeated slashes")
	for _, p := range protected {
		for _, i := range slashes(p) {
			add(p[:i]+"/"+p[i:], p[:i]+"//"+p[i:])
		}
	}
	class("dot segments, raw and encoded")
	for _, p := range protected {
		for _, i := range slashes(p) {
			for _, dots := range []string{"./", "x/../", "%2e/", "%2E/", "x/%2e%2e/", "x/.%2e/", "x/%2e./", "x/%2E%2E/"} {
				add(p[:i+1] + dots + p[i+1:])
			}
		}
	}
	class("escaping a public path")
	for _, p := range protected {
		rest := p[1:]
		for _, via := range []string{"/healthz/../", "/healthz/%2e%2e/", "/healthz/..%2f", "/healthz/..%2F", "/healthz%2f..%2f",
			"/healthz/..;/", "/healthz;/../", "/healthz/..\\", "/healthz/..%5c", "/healthz/..%5C", "/healthz#/../",
			"/healthz?/../", "/healthz/%2e%2e%2f", "/healthz/.%2e/", "/healthz//../", "/healthz/./../"} {
			add(via + rest)
		}
	}
	class("path parameters")
	for _, p := range protected {
		for _, i := range slashes(p)[1:] {
			add(p[:i]+";x"+p[i:], p[:i]+";"+p[i:])
		}
		add(p+";", p+";jsessionid=1", p+"%3b", p+"%3Bx", "/x/..;"+p)
	}
	class("encoded and raw separators")
	for _, p := range protected {
		for _, i := range slashes(p)[1:] {
			for _, sep := range []string{"%2F", "%2f", "%5C", "%5c", "\\"} {
				add(p[:i] + sep + p[i+1:])
			}
		}
	}
	class("control characters, NUL, spaces, fragments")
	for _, p := range protected {
		add(p+"%00", p+"%00.json", p+"%0a", p+"%0d%0a", p+"%09", p+"%7f", p+"#", p+"#x", p+"%23")
	}
	class("absolute-form and authority-looking targets")
	for _, p := range protected {
		add("http://api.example"+p, "HTTP://api.example"+p, "//api.example"+p, "/"+p, "*")
	}
	class("double encoding and invalid UTF-8")
	for _, p := range protected {
		add(strings.Replace(p, "s", "%2573", 1), strings.Replace(p, "/", "%252f", 2), p+"%ff", p+"%c0%af", p+"%", p+"%zz")
	}
	class("letters outside ASCII that case-insensitive routers take for ASCII ones, encoded and raw")
	for _, p := range protected {
		for i := range len(p) {
			switch p[i] {
			case 'i':
				add(p[:i]+"%C4%B0"+p[i+1:], p[:i]+"%C4%B1"+p[i+1:], p[:i]+"%c4%b1"+p[i+1:], p[:i]+"\u0130"+p[i+1:], p[:i]+"\u0131"+p[i+1:])
			case 's':
				add(p[:i]+"%C5%BF"+p[i+1:], p[:i]+"\u017f"+p[i+1:])
			}
		}
		add(strings.NewReplacer("i", "%C4%B0", "s", "%C5%BF").Replace(p), strings.NewReplacer("I", "\u0131").Replace(strings.ToUpper(p)))
	}
	class("format suffixes")
	for _, p := range protected {
		add(p+".json", p+".JSON", p+".tar.gz", p+".json/", p+".json;x", p+";x.json", p+"%2Ejson", p+".%6Ason",
			strings.ToUpper(p)+".json", p+"/.json", p+".json?x=.y", p+".json%00")
	}
	class("combinations (seeded)")
	rng := rand.New(rand.NewPCG(11, 0))
	transforms := []func(string) string{
		strings.ToUpper,
		func(s string) string { return s + "/" },
		func(s string) string { return s + ";x" },
		func(s string) string { return "/healthz/.." + s },
		func(s string) string { return "/x/%2e%2e" + s },
		func(s string) string { return strings.Replace(s, "/", "//", 1) },
		func(s string) string { return strings.Replace(s, "e", "%65", 1) },
		func(s string) string { return strings.Replace(s, "e", "%45", 1) },
		func(s string) string { return strings.Replace(s, "/", "/./", 1) },
		func(s string) string { return strings.Replace(s, "/", "/..;/x/../", 1) },
		func(s string) string { return s + "?q=/healthz" },
	}
	for range 160 {
		t := protected[rng.IntN(len(protected))]
		for range 2 + rng.IntN(2) {
			t = transforms[rng.IntN(len(transforms))](t)
		}
		add(t)
	}
	class("combinations with non-ASCII letters and suffixes (seeded)")
	rng = rand.New(rand.NewPCG(20, 0))
	transforms = append(transforms,
		func(s string) string { return strings.Replace(s, "i", "%C4%B0", 1) },
		func(s string) string { return strings.Replace(s, "I", "\u0131", 1) },
		func(s string) string { return strings.Replace(s, "s", "\u017f", 1) },
		func(s string) string { return strings.Replace(s, "S", "%C5%BF", 1) },
		func(s string) string { return s + ".json" },
		func(s string) string { return s + ".a.b" },
	)
	for range 60 {
		t := protected[rng.IntN(len(protected))]
		for range 2 + rng.IntN(3) {
			t = transforms[rng.IntN(len(transforms))](t)
		}
		add(t)
	}
	return out
}

func encodeAll(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			b.WriteByte('/')
			continue
		}
		fmt.Fprintf(&b, "%%%02X", p[i])
	}
	return b.String()
}

func titleCase(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if s != "" {
			segs[i] = strings.ToUpper(s[:1]) + s[1:]
		}
	}
	return strings.Join(segs, "/")
}

// slashes returns the index of every "/" in p.
func slashes(p string) []int {
	var out []int
	for i := range len(p) {
		if p[i] == '/' {
			out = append(out, i)
		}
	}
	return out
}

func formatCorpus(entries []corpusEntry) string {
	var b strings.Builder
	b.WriteString("# Request targets for the path differential test (e2e/paths_test.go), one Go-quoted string a\n" +
		"# line. Generated by pathCorpus: go test ./e2e -run Corpus -update-corpus\n")
	for _, e := range entries {
		if e.class != "" {
			fmt.Fprintf(&b, "\n# %s\n", e.class)
			continue
		}
		b.WriteString(strconv.Quote(e.target) + "\n")
	}
	return b.String()
}

func readCorpus(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(corpusFile)
	require.NoError(t, err)
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		target, err := strconv.Unquote(line)
		require.NoError(t, err, "%s:%d", corpusFile, i+1)
		out = append(out, target)
	}
	return out
}
