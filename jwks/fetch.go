package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// newHTTPClient returns a client with connect, handshake, header and total timeouts, that
// refuses redirects to plain http unless allowHTTP is set.
func newHTTPClient(allowHTTP bool) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   15 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return checkURL(req.URL.String(), allowHTTP)
		},
	}
}

// checkURL accepts absolute https URLs, and http ones only when allowHTTP is set.
func checkURL(raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("jwks: bad URL %q: %w", raw, err)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("jwks: URL %q has no host", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && allowHTTP:
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("jwks: URL %q is plain http; keys must come over https (allow http only for local stacks)", raw)
	default:
		return fmt.Errorf("jwks: URL %q: scheme must be https", raw)
	}
}

// get fetches u and returns a body no larger than MaxBodyBytes.
func (s *Set) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: fetch %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("jwks: fetch %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.opts.MaxBodyBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: fetch %s: %w", u, err)
	}
	if int64(len(body)) > s.opts.MaxBodyBytes {
		return nil, nil, fmt.Errorf("jwks: fetch %s: response larger than %d bytes", u, s.opts.MaxBodyBytes)
	}
	return body, resp.Header, nil
}

// metadataPaths are tried in order: Okta serves both; OAuth 2.0 metadata (RFC 8414) first.
var metadataPaths = []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"}

// discover reads the issuer's metadata and returns its jwks_uri and issuer identifier. The
// metadata's issuer must be the configured one (a trailing slash aside), so a mis-typed or
// impostor issuer fails loudly; tokens are then held to the identifier exactly (IssuerID).
func (s *Set) discover(ctx context.Context) (md metadata, err error) {
	base := strings.TrimSuffix(s.opts.Issuer, "/")
	var errs []error
	for _, p := range metadataPaths {
		u := base + p
		body, _, err := s.get(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := json.Unmarshal(body, &md); err != nil {
			errs = append(errs, fmt.Errorf("jwks: metadata %s: %w", u, err))
			continue
		}
		if strings.TrimSuffix(md.Issuer, "/") != base {
			return metadata{}, fmt.Errorf("jwks: metadata %s names issuer %q, want %q", u, md.Issuer, s.opts.Issuer)
		}
		if md.JWKSURI == "" {
			return metadata{}, fmt.Errorf("jwks: metadata %s has no jwks_uri", u)
		}
		if err := checkURL(md.JWKSURI, s.opts.AllowHTTP); err != nil {
			return metadata{}, fmt.Errorf("jwks: metadata %s: %w", u, err)
		}
		if md.Introspection != "" && checkURL(md.Introspection, s.opts.AllowHTTP) != nil {
			md.Introspection = "" // not one to send tokens to: as if the metadata named none
		}
		return md, nil
	}
	return metadata{}, fmt.Errorf("jwks: discovery for issuer %s failed: %w", s.opts.Issuer, errors.Join(errs...))
}

// refreshInterval turns a key set response's Cache-Control into the time until the next
// refresh: max-age clamped to [lo, hi]; no-cache or no-store mean lo (so an issuer that forbids
// caching is not hammered); no max-age means def.
func refreshInterval(cacheControl string, lo, hi, def time.Duration) time.Duration {
	d := def
	for _, directive := range strings.Split(cacheControl, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
		switch strings.ToLower(name) {
		case "no-cache", "no-store":
			return lo
		case "max-age":
			if secs, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64); err == nil && secs >= 0 {
				d = time.Duration(min(secs, int64(hi/time.Second)+1)) * time.Second
			}
		}
	}
	return min(max(d, lo), hi)
}
