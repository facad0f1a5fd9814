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
	"syscall"
	"time"

	"github.com/platformauth/envoy-okta-authz/authz"
)

// policyPollInterval is how often the policy file is checked for changes. Polling (rather than
// inotify) also sees Kubernetes ConfigMap updates, which swap a symlink.
const policyPollInterval = 2 * time.Second

// watchPolicy reloads the policy file on SIGHUP and when its content changes. A valid file is
// swapped in atomically; an invalid one is logged and the running policy stays.
func watchPolicy(ctx context.Context, c *config, az *authz.Authorizer, log *slog.Logger, interval time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	last := c.policyDigest
	var pending []byte // a changed digest seen once; reloaded when seen again unchanged
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			last = reloadPolicy(c, az, log, "sighup")
		case <-t.C:
			d := fileDigest(c.Policy)
			switch {
			case d == nil || bytes.Equal(d, last):
				pending = nil
			case !bytes.Equal(d, pending):
				// Changed: wait one more interval for it to settle, so a file caught
				// half-written (a shorter, still valid policy) is never swapped in.
				pending = d
			default:
				pending = nil
				last = reloadPolicy(c, az, log, "file_changed")
			}
		}
	}
}

// fileDigest is the digest of a file's content, nil when it cannot be read.
func fileDigest(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return digest(data)
}

// digest is what the watcher compares to notice a change.
func digest(data []byte) []byte {
	sum := sha256.Sum256(data)
	return sum[:]
}

// reloadPolicy loads the file and swaps it in, unless it is invalid or changes the issuers
// (their key sets are built at start-up; that change needs a restart). It returns the digest
// of the content it read, so an unchanged broken file is not reported again and again.
func reloadPolicy(c *config, az *authz.Authorizer, log *slog.Logger, trigger string) []byte {
	p, digest, err := readPolicy(c.Policy, c.policyOptions())
	if err == nil && !slices.EqualFunc(p.Issuers, policyIssuers(c.PolicyRules), func(a, b authz.IssuerSpec) bool {
		return reflect.DeepEqual(a, b)
	}) {
		err = fmt.Errorf("the issuers section changed; restart the service to change issuers")
	}
	if err != nil {
		log.Error("policy reload rejected; the running policy stays", "trigger", trigger, "file", c.Policy, "error", err.Error())
		return digest
	}
	az.SetPolicy(p)
	log.Info("policy reloaded", "trigger", trigger, "file", c.Policy, "rules", len(p.Rules))
	return digest
}
