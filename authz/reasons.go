package authz

import (
	"errors"
	"slices"

	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
	"github.com/platformauth/envoy-okta-authz/token"
)

// Reason is why a request was refused or could not be judged: the token package defines the
// type and the reasons of verification; this package, the policy and the front ends add theirs.
type Reason = token.Reason

// ErrMultipleCredentials: two Authorization headers, or two credentials joined into one.
var ErrMultipleCredentials = token.ErrMultipleCredentials

// The reasons a request is refused before any rule or token is considered (400
// invalid_request): it cannot be judged as the upstream would read it.
var (
	// ErrInvalidHost: the Host is not a host name, address or [IPv6] with an optional numeric
	// port, so proxies may route it to another host than the one a rule would judge.
	ErrInvalidHost = &Reason{Code: "invalid_host", Description: "The request host is not a valid host name and port"}
)

// PathReasons are the reasons for the path refusals (reqpath), in reqpath.Refusals' order;
// each code is "path_" and the refusal's.
var PathReasons = func() []*Reason {
	var out []*Reason
	for _, r := range reqpath.Refusals {
		out = append(out, &Reason{Code: "path_" + r.Code, Description: r.Description})
	}
	return out
}()

// pathReason is the Reason for a path refusal.
func pathReason(err error) *Reason {
	var r *reqpath.Refusal
	if errors.As(err, &r) {
		if i := slices.Index(reqpath.Refusals, r); i >= 0 {
			return PathReasons[i]
		}
	}
	return ErrPathRefused
}

// ErrPathRefused stands for a path refusal reqpath does not list (none today).
var ErrPathRefused = &Reason{Code: "path_refused", Description: "The request path is not acceptable"}
