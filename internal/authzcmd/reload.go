package authzcmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/platformauth/envoy-okta-authz/authz"
	"github.com/platformauth/envoy-okta-authz/policy"
)

// policyPollInterval is how often the policy file is checked for changes. Polling (rather than
// inotify) also sees Kubernetes ConfigMap updates, which swap a symlink.
const policyPollInterval = 2 * time.Second

// hupSettle is how long the policy file must keep the same content after a SIGHUP before it is
// loaded: the signal may come while an editor or a `cat >` is still writing it.
const hupSettle = 500 * time.Millisecond

// maxHupWait bounds how long a SIGHUP waits for the file to settle.
const maxHupWait = 30 * time.Second

// watchPolicy reloads the policy file on a signal on hup and when its content changes. A valid
// file is swapped in atomically; an invalid one is logged and the running policy stays.
func watchPolicy(ctx context.Context, c *config, az *authz.Authorizer, log *slog.Logger, interval time.Duration, hup <-chan os.Signal) {
	w := &policyWatcher{c: c, az: az, log: log, poll: interval, settle: hupSettle}
	w.run(ctx, hup)
}

// catchHUP takes SIGHUP for as long as the service runs, until stop: Go's default for it is to
// end the process, which a SIGHUP sent to a service without --policy, or during the shutdown
// drain, would otherwise do.
func catchHUP() (hup <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// policyWatcher loads only content that has stopped changing: a file caught half-written may
// be valid YAML that lacks the rules after the cut, and loading it would widen access (its
// routes fall to the default rule). The poller reloads a changed file once a second poll sees
// the same content; a SIGHUP once the content stays the same for settle.
type policyWatcher struct {
	c            *config
	az           *authz.Authorizer
	log          *slog.Logger
	poll, settle time.Duration
}

func (w *policyWatcher) run(ctx context.Context, hup <-chan os.Signal) {
	last := w.c.policyDigest
	var pending []byte // a changed digest seen once; reloaded when seen again unchanged
	t := time.NewTicker(w.poll)
	defer t.Stop()
	var settle <-chan time.Time
	var hupContent []byte // the content read at the SIGHUP (or the last settle check)
	var hupSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			hupContent, hupSince = readOrNil(w.c.Policy), time.Now()
			settle = time.After(w.settle)
		case <-settle:
			now := readOrNil(w.c.Policy)
			switch {
			case now != nil && bytes.Equal(now, hupContent):
				settle = nil
				last = w.apply(now, "sighup")
				pending = nil
			case time.Since(hupSince) > maxHupWait:
				settle = nil
				w.log.Error("policy reload on SIGHUP abandoned: the file kept changing (or could not be read)",
					"file", w.c.Policy, "waited", maxHupWait.String())
			default:
				hupContent = now // still being written: wait until it stops changing
				settle = time.After(w.settle)
			}
		case <-t.C:
			data := readOrNil(w.c.Policy)
			if data == nil {
				pending = nil
				continue
			}
			switch d := digest(data); {
			case bytes.Equal(d, last):
				pending = nil
			case !bytes.Equal(d, pending):
				// Changed: wait one more interval for it to settle.
				pending = d
			default:
				pending = nil
				last = w.apply(data, "file_changed")
			}
		}
	}
}

// readOrNil reads a file, nil when it cannot be read.
func readOrNil(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return data
}

// digest is what the watcher compares to notice a change.
func digest(data []byte) []byte {
	sum := sha256.Sum256(data)
	return sum[:]
}

// apply loads the policy from data and swaps it in, and returns data's digest (so that an
// unchanged broken file is not reported again and again). See reloadPolicy.
func (w *policyWatcher) apply(data []byte, trigger string) []byte {
	p, err := loadPolicyData(data, w.c.policyOptions())
	reload(w.c, w.az, w.log, trigger, p, err)
	return digest(data)
}

// reloadPolicy reads the file and swaps its policy in, unless it is invalid or changes the
// issuers (their key sets are built at start-up; that change needs a restart). It returns the
// digest of the content it read.
func reloadPolicy(c *config, az *authz.Authorizer, log *slog.Logger, trigger string) []byte {
	p, sum, err := readPolicy(c.Policy, c.policyOptions())
	reload(c, az, log, trigger, p, err)
	return sum
}

func reload(c *config, az *authz.Authorizer, log *slog.Logger, trigger string, p *policy.Policy, err error) {
	if err == nil && !slices.EqualFunc(p.Issuers, policyIssuers(c.PolicyRules), func(a, b policy.IssuerSpec) bool {
		return reflect.DeepEqual(a, b)
	}) {
		err = fmt.Errorf("the issuers section changed; restart the service to change issuers")
	}
	if err != nil {
		log.Error("policy reload rejected; the running policy stays", "trigger", trigger, "file", c.Policy, "error", err.Error())
		return
	}
	// Rules that go away widen access to their routes (they fall to another rule or the
	// default): say so loudly, so that a truncated or mistaken file is noticed.
	if gone := removedRules(az.Policy(), p); len(gone) > 0 {
		log.Warn("policy reload removes rules: their routes now fall to other rules or the default", "trigger", trigger,
			"file", c.Policy, "removed", strings.Join(gone, ","))
	}
	az.SetPolicy(p)
	log.Info("policy reloaded", "trigger", trigger, "file", c.Policy, "rules", len(p.Rules))
}

// removedRules names the rules of old that new lacks.
func removedRules(old, new *policy.Policy) []string {
	var gone []string
	for _, r := range old.Rules {
		if !slices.ContainsFunc(new.Rules, func(n *policy.Rule) bool { return n.Name == r.Name }) {
			gone = append(gone, r.Name)
		}
	}
	return gone
}
