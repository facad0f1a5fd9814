// Command bench is the load benchmark of the authz service's gRPC Check, measured against a no-op
// Check server on the same gRPC stack (the floor) in the same run:
//
//	go run ./bench                 # alternating load rounds with ghz, a table of ratios
//	go run ./bench -soak 10m       # fixed-rate mix with a key rotation; checks for leaks and wrong decisions
//
// It installs ghz at a pinned version with `go install`, builds the servers, starts a dev issuer
// in process, and measures each server's CPU time per request from /proc/PID/stat — the figure
// that stays stable on a shared machine, where requests per second swing.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/platformauth/envoy-okta-authz/devidp"
)

// ghzVersion is pinned so runs compare.
const ghzVersion = "v0.120.0"

func main() {
	var o options
	flag.DurationVar(&o.round, "round", 3*time.Second, "duration of one load round")
	flag.IntVar(&o.reps, "reps", 5, "times each scenario runs, each time right after a round of the floor")
	flag.IntVar(&o.concurrency, "c", 50, "concurrent streams (ghz -c)")
	flag.IntVar(&o.distinct, "distinct", 2000, "distinct tokens in the cold round")
	flag.IntVar(&o.memTokens, "mem-tokens", 100_000, "distinct tokens cached for the memory figure (0 skips)")
	flag.DurationVar(&o.soak, "soak", 0, "run the soak test for this long instead of the load rounds")
	flag.IntVar(&o.soakRate, "soak-rate", 400, "requests per second in the soak test")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of the authz service during the first round of -profile-scenario to this file")
	flag.StringVar(&o.profileScenario, "profile-scenario", "hot", "the scenario -profile profiles (a name from the table)")
	flag.IntVar(&o.workingSet, "working-set", 50_000, "distinct tokens in the working-set scenarios (0 skips them)")
	flag.StringVar(&o.only, "scenarios", "", "comma-separated scenarios to run (with their floors); default all")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	round                       time.Duration
	reps, concurrency, distinct int
	memTokens                   int
	soak                        time.Duration
	soakRate                    int
	profile, profileScenario    string
	workingSet                  int
	only                        string
}

// wants reports whether the run includes sc: floors run whenever a scenario paired with them does.
func (o options) wants(sc scenario) bool {
	return sc.floor == "" || o.includes(sc.name)
}

// includes reports whether the run includes the scenario named name (all do without -scenarios).
func (o options) includes(name string) bool {
	return o.only == "" || slices.Contains(strings.Split(o.only, ","), name)
}

// env is everything a run needs: binaries, the dev issuer, a work directory.
type env struct {
	dir     string
	ghz     string
	authz   string
	noop    string
	idp     *devidp.Server
	idpStop func()
}

func run(ctx context.Context, o options) error {
	if runtime.GOOS != "linux" {
		return errors.New("needs Linux (/proc for CPU time)")
	}
	dir, err := os.MkdirTemp("", "authz-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e := &env{dir: dir}
	if err := e.build(); err != nil {
		return err
	}
	if err := e.startIssuer(); err != nil {
		return err
	}
	defer e.idpStop()
	if o.soak > 0 {
		return soak(ctx, e, o)
	}
	return load(ctx, e, o)
}

// build installs ghz and builds the authz service and the no-op server.
func (e *env) build() error {
	bin := filepath.Join(e.dir, "bin")
	fmt.Fprintf(os.Stderr, "installing ghz %s and building servers…\n", ghzVersion)
	install := exec.Command("go", "install", "github.com/bojand/ghz/cmd/ghz@"+ghzVersion)
	install.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("go install ghz: %v\n%s", err, out)
	}
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/authz", "./bench/noop")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	e.ghz, e.authz, e.noop = filepath.Join(bin, "ghz"), filepath.Join(bin, "authz"), filepath.Join(bin, "noop")
	return nil
}

func (e *env) startIssuer() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	idp, err := devidp.New(devidp.Config{
		Issuer:  "http://" + l.Addr().String() + "/oauth2/default",
		Clients: map[string]devidp.Client{"bench": {Secret: "bench", Scopes: []string{"messages:read"}}},
	})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	e.idp, e.idpStop = idp, func() { _ = srv.Close() }
	return nil
}

// server is a running server process.
type server struct {
	cmd               *exec.Cmd
	grpc, http, admin string
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startAuthz runs the authz service against the dev issuer and waits until it is ready.
func (e *env) startAuthz(name string, extra ...string) (*server, error) {
	addrs := make([]string, 3)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	args := append([]string{"--issuer", e.idp.Issuer(), "--allow-http-issuer", "--log-level", "error",
		"--grpc-addr", addrs[0], "--http-addr", addrs[1], "--admin-addr", addrs[2]}, extra...)
	cmd := exec.Command(e.authz, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, grpc: addrs[0], http: addrs[1], admin: addrs[2]}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + s.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		time.Sleep(50 * time.Millisecond) // polling a child process's readiness, not a test
	}
	s.stop()
	return nil, fmt.Errorf("%s did not become ready", name)
}

func (e *env) startNoop(args ...string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.noop, append([]string{"--addr", addr, "--http-addr", httpAddr}, args...)...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, grpc: addr, http: httpAddr}
	up := func(a string) bool {
		c, err := net.Dial("tcp", a)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if up(addr) && up(httpAddr) {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return nil, errors.New("noop server did not start")
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

// cpuTime is the process's user+system CPU time.
func (s *server) cpuTime() (time.Duration, error) { return processCPU(s.cmd.Process.Pid) }

// processCPU is a process's user+system CPU time, from /proc/PID/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may contain spaces) start after the last ')'.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// rssBytes is the process's resident set size, from /proc/PID/status.
func (s *server) rssBytes() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// checkRequest builds what Envoy would send for GET /api/messages with the given Authorization.
func checkRequest(authorization string) *authv3.CheckRequest {
	h := map[string]string{
		":authority": "api.example", ":method": "GET", ":path": "/api/messages", ":scheme": "https",
		"user-agent": "curl/8.5.0", "accept": "*/*", "x-request-id": "6f1d1c3e-1f0e-4a57-9d0b-1f0f1e2d3c4b",
		"x-forwarded-proto": "https",
	}
	if authorization != "" {
		h["authorization"] = authorization
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1234567890", Method: "GET", Host: "api.example", Path: "/api/messages", Scheme: "https",
			Protocol: "HTTP/1.1", Headers: h,
		}},
		ContextExtensions: map[string]string{"policy": "messages"},
	}}
}

// writePayload writes count-delimited CheckRequests, which ghz sends round-robin.
func writePayload(path string, reqs []*authv3.CheckRequest) error {
	var buf bytes.Buffer
	for _, r := range reqs {
		if _, err := protodelim.MarshalTo(&buf, r); err != nil {
			return err
		}
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// roundResult is what one round of load measured.
type roundResult struct {
	Count     int64
	RPS       float64
	p50, p99  time.Duration
	clientCPU time.Duration // the load generator's CPU time
}

// ghzResult is the part of ghz's JSON report the table needs.
type ghzResult struct {
	Count               int64            `json:"count"`
	RPS                 float64          `json:"rps"`
	StatusCodeDist      map[string]int64 `json:"statusCodeDistribution"`
	LatencyDistribution []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
	// clientCPU is ghz's own CPU time for the round: it shares the cores with the server, so
	// what the client spends per call bounds the requests per second too.
	clientCPU time.Duration
}

func (r *ghzResult) percentile(p int) time.Duration {
	for _, l := range r.LatencyDistribution {
		if l.Percentage == p {
			return l.Latency
		}
	}
	return 0
}

// ghz runs one round against addr and returns ghz's report.
func (e *env) ghzRound(addr, payload string, o options) (*roundResult, error) {
	cmd := exec.Command(e.ghz, "--insecure", "--call", "envoy.service.auth.v3.Authorization/Check",
		"--binary-file", payload, "--disable-template-data", "--disable-template-functions",
		"-c", strconv.Itoa(o.concurrency), "-z", o.round.String(), "--connections", "1", "-O", "json", addr)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ghz: %w", err)
	}
	var r ghzResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("ghz report: %w", err)
	}
	r.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	// Calls in flight when the round's time is up end as Unavailable or Canceled; anything
	// beyond those is a real failure.
	if failed := r.Count - r.StatusCodeDist["OK"]; failed > int64(2*o.concurrency) {
		return nil, fmt.Errorf("ghz: %d calls failed: %v", failed, r.StatusCodeDist)
	}
	return &roundResult{Count: r.Count, RPS: r.RPS, p50: r.percentile(50), p99: r.percentile(99), clientCPU: r.clientCPU}, nil
}
