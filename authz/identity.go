package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/platformauth/envoy-okta-authz/policy"
	"github.com/platformauth/envoy-okta-authz/token"
)

// MaxClaimHeaderBytes bounds a claim header's value: a longer value is refused, never cut.
const MaxClaimHeaderBytes = 4096

// ErrClaimUnforwardable: a claim a header carries cannot go in a header (control characters,
// or too long). The request is refused rather than forwarded with a broken or cut identity.
var ErrClaimUnforwardable = &Reason{Code: "claim_unforwardable", Description: "A claim of the access token cannot be forwarded"}

// renderClaim writes a claim's value for a header: a string as it is; a number or boolean in its
// JSON form; an array of scalars joined with sep; an object (or an array holding one) as compact
// JSON. A null, an empty string and an empty array are absent: proxies disagree on an empty
// header (nginx's proxy_set_header removes it). It refuses values a header cannot carry.
func renderClaim(v any, sep string) (string, bool, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case string:
		s = x
	case bool, float64, json.Number:
		s = scalarString(x)
	case []any:
		parts := make([]string, 0, len(x))
		scalars := true
		for _, e := range x {
			switch e.(type) {
			case string, bool, float64, json.Number:
				parts = append(parts, scalarString(e))
			default:
				scalars = false
			}
		}
		if scalars {
			s = strings.Join(parts, sep)
			break
		}
		b, err := compactJSON(x)
		if err != nil {
			return "", false, err
		}
		s = b
	default:
		b, err := compactJSON(x)
		if err != nil {
			return "", false, err
		}
		s = b
	}
	if s == "" {
		return "", false, nil
	}
	if len(s) > MaxClaimHeaderBytes {
		return "", false, fmt.Errorf("%w: %d bytes, more than %d", ErrClaimUnforwardable, len(s), MaxClaimHeaderBytes)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", false, fmt.Errorf("%w: a control character", ErrClaimUnforwardable)
		}
	}
	return s, true, nil
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case json.Number:
		return x.String()
	}
	return ""
}

func compactJSON(v any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("%w: %v", ErrClaimUnforwardable, err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// derived is what a token's claims give under one identity: the claim headers and metadata it
// renders (or why it cannot), and the upstream headers of an allow, in both forms. It is kept on
// the claims (token.Claims.Memo), which the token cache shares, so that a token in steady use
// derives it once: the claims header alone is about a kilobyte of base64.
type derived struct {
	identity               *policy.Identity
	claimHeaders, metadata []Header
	err                    error
	// upstream are the headers of an allow (UpstreamHeaders).
	upstream []Header
	// httpForm is upstream in net/http's form, built when the HTTP front end first asks.
	httpOnce sync.Once
	httpForm httpHeaders
}

// derive returns what c gives under id (nil: the default identity, as a dry-run allow
// forwards), from the claims' memo when it was derived for id.
func derive(id *policy.Identity, c *token.Claims) *derived {
	if d, ok := c.Memo.Load().(*derived); ok && d.identity == id {
		return d
	}
	d := &derived{identity: id}
	if id != nil {
		d.claimHeaders, d.metadata, d.err = renderFresh(id, c)
	}
	if d.err == nil {
		d.upstream = upstreamHeaders(id, c, d.claimHeaders)
	}
	c.Memo.Store(d)
	return d
}

func renderFresh(id *policy.Identity, c *token.Claims) (headers, metadata []Header, err error) {
	if len(id.Claims) == 0 && len(id.Metadata) == 0 {
		return nil, nil, nil
	}
	all, err := c.All()
	if err != nil {
		return nil, nil, err
	}
	for _, ch := range id.Claims {
		v, ok := ch.Claim.Lookup(all)
		if !ok {
			continue
		}
		s, present, err := renderClaim(v, ch.Separator)
		if err != nil {
			return nil, nil, fmt.Errorf("claim %s for %s: %w", ch.Claim, ch.Header, err)
		}
		if present {
			headers = append(headers, Header{ch.Header, s})
		}
	}
	for _, p := range id.Metadata {
		v, ok := p.Lookup(all)
		if !ok {
			continue
		}
		s, present, err := renderClaim(v, ",")
		if err != nil {
			return nil, nil, fmt.Errorf("claim %s for metadata: %w", p, err)
		}
		if present {
			metadata = append(metadata, Header{p.String(), s})
		}
	}
	return headers, metadata, nil
}
