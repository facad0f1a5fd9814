package devidp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/platformauth/envoy-okta-authz/internal/dpop"
)

// Handler serves the authorization server's public endpoints under the issuer's path:
//
//	{path}/.well-known/oauth-authorization-server
//	{path}/.well-known/openid-configuration
//	{path}/v1/keys
//	{path}/v1/token
//	{path}/v1/introspect   RFC 7662
//	{path}/v1/revoke       RFC 7009
func (s *Server) Handler() http.Handler {
	p := strings.TrimSuffix(s.issuer.Path, "/")
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+p+"/.well-known/oauth-authorization-server", s.serveMetadata)
	mux.HandleFunc("GET "+p+"/.well-known/openid-configuration", s.serveMetadata)
	mux.HandleFunc("GET "+p+"/v1/keys", s.serveKeys)
	mux.HandleFunc("POST "+p+"/v1/token", s.serveToken)
	mux.HandleFunc("POST "+p+"/v1/introspect", s.serveIntrospect)
	mux.HandleFunc("POST "+p+"/v1/revoke", s.serveRevoke)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

// AdminHandler serves POST /rotate, which rotates the signing key and answers with the new kid.
// Bind it to loopback only.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rotate", func(w http.ResponseWriter, _ *http.Request) {
		kid, err := s.Rotate()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"kid": kid})
	})
	return mux
}

func (s *Server) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	iss := s.cfg.Issuer
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              iss + "/v1/keys",
		"token_endpoint":                        iss + "/v1/token",
		"grant_types_supported":                 []string{"client_credentials"},
		"response_types_supported":              []string{"token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"introspection_endpoint":                iss + "/v1/introspect",
		"revocation_endpoint":                   iss + "/v1/revoke",
		"introspection_endpoint_auth_methods_supported": clientAuthMethods,
		"revocation_endpoint_auth_methods_supported":    clientAuthMethods,
		"dpop_signing_alg_values_supported":             dpop.DefaultAlgs,
		"id_token_signing_alg_values_supported":         []string{"RS256"},
		"scopes_supported":                              s.allScopes(),
	})
}

// clientAuthMethods are how a client may authenticate at the introspection and revocation
// endpoints.
var clientAuthMethods = []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"}

func (s *Server) allScopes() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range s.cfg.Clients {
		for _, sc := range c.Scopes {
			if !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	return out
}

func (s *Server) serveKeys(w http.ResponseWriter, _ *http.Request) {
	body, err := s.KeySet()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d, must-revalidate", int(s.cfg.KeysMaxAge.Seconds())))
	_, _ = w.Write(body)
}

// serveToken implements the client-credentials grant (RFC 6749 §4.4), with client
// authentication by HTTP Basic or by form fields (client_secret_post).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, &errOAuth{400, "invalid_request", "The request body could not be parsed."}, false)
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeOAuthError(w, &errOAuth{400, "unsupported_grant_type", fmt.Sprintf("The grant type %q is not supported; use client_credentials.", gt)}, basic)
		return
	}
	scopes, err := s.grant(id, secret, strings.Fields(r.PostForm.Get("scope")))
	if err != nil {
		writeOAuthError(w, err, basic)
		return
	}
	req := TokenRequest{ClientID: id, Scopes: scopes, Extra: map[string]any{}}
	// acr and auth_time: dev-only parameters (devidp token --acr, --auth-time) that stand for a
	// user's sign-in, for step-up rules.
	if acr := r.PostForm.Get("acr"); acr != "" {
		req.Extra["acr"] = acr
	}
	if at := r.PostForm.Get("auth_time"); at != "" {
		n, err := strconv.ParseInt(at, 10, 64)
		if err != nil || n < 0 {
			writeOAuthError(w, &errOAuth{400, "invalid_request", "auth_time is a NumericDate (seconds since the epoch)."}, basic)
			return
		}
		req.Extra["auth_time"] = n
	}
	tokenType := "Bearer"
	if proofs := r.Header.Values("DPoP"); len(proofs) > 0 {
		// RFC 9449 §5: a proof for this very request binds the token to its key.
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		p, err := s.dpop.Verify(proofs, dpop.Request{Method: r.Method, URI: scheme + "://" + r.Host + r.URL.Path})
		if err == nil {
			err = s.dpop.Remember(r.Context(), p)
		}
		if err != nil {
			writeOAuthError(w, &errOAuth{400, "invalid_dpop_proof", err.Error()}, basic)
			return
		}
		req.Extra["cnf"] = map[string]string{"jkt": p.Thumbprint}
		tokenType = "DPoP"
	}
	mint := s.Mint
	if s.cfg.Clients[id].Opaque || r.PostForm.Get("token_format") == "opaque" {
		mint = s.MintOpaque // token_format=opaque: a dev-only extension (devidp token --opaque)
	}
	tok, err := mint(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":   tokenType,
		"expires_in":   int(s.cfg.TokenTTL.Seconds()),
		"access_token": tok,
		"scope":        strings.Join(scopes, " "),
	})
}

func writeOAuthError(w http.ResponseWriter, err error, basic bool) {
	var oe *errOAuth
	if !errors.As(err, &oe) {
		oe = &errOAuth{500, "server_error", err.Error()}
	}
	if oe.status == http.StatusUnauthorized && basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="devidp"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, oe.status, map[string]string{"error": oe.code, "error_description": oe.desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
