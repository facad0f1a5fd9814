// Package demoapi is the protected API of Okta's Node/Express resource-server quickstart, as a
// Go HTTP handler: GET /api/messages returns messages, GET /secure echoes the caller's verified
// identity, GET /healthz is for probes.
//
// It does no token verification of its own: the proxy in front (Envoy, nginx) asks the authz
// service and forwards the identity in x-authz-* headers. As defence in depth, the protected
// routes refuse requests that arrive without those headers. It must only be reachable through
// the proxy: anyone who can reach it directly can forge the headers.
package demoapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// The identity headers the authz service sets (see authz.Header*). Repeated here, not imported:
// the demo API depends on the header contract, not on the authz service's code.
const (
	headerSubject  = "X-Authz-Subject"
	headerClientID = "X-Authz-Client-Id"
	headerUserID   = "X-Authz-User-Id"
	headerScopes   = "X-Authz-Scopes"
	headerClaims   = "X-Authz-Claims"
)

// Message is one message, as in the quickstart.
type Message struct {
	Date time.Time `json:"date"`
	Text string    `json:"text"`
}

// Identity is what /secure echoes.
type Identity struct {
	Subject  string         `json:"sub"`
	ClientID string         `json:"cid,omitempty"`
	UserID   string         `json:"uid,omitempty"`
	Scopes   []string       `json:"scopes"`
	Claims   map[string]any `json:"claims,omitempty"`
}

// Handler returns the demo API. now is the clock for message dates.
func Handler(now func() time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /api/messages", requireIdentity(func(w http.ResponseWriter, _ *http.Request, _ *Identity) {
		t := now().UTC()
		writeJSON(w, http.StatusOK, map[string][]Message{"messages": {
			{Date: t.Add(-time.Hour), Text: "I am a robot."},
			{Date: t, Text: "Hello, world!"},
		}})
	}))
	mux.Handle("GET /secure", requireIdentity(func(w http.ResponseWriter, _ *http.Request, id *Identity) {
		writeJSON(w, http.StatusOK, id)
	}))
	return mux
}

// requireIdentity reads the identity the proxy forwarded and answers 401 without one.
func requireIdentity(next func(http.ResponseWriter, *http.Request, *Identity)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub := r.Header.Get(headerSubject)
		if sub == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{
				"error":             "unauthorized",
				"error_description": "No verified identity: this API must be called through the authorizing proxy",
			})
			return
		}
		id := &Identity{
			Subject:  sub,
			ClientID: r.Header.Get(headerClientID),
			UserID:   r.Header.Get(headerUserID),
			Scopes:   strings.Fields(r.Header.Get(headerScopes)),
		}
		if raw, err := base64.RawURLEncoding.DecodeString(r.Header.Get(headerClaims)); err == nil && len(raw) > 0 {
			_ = json.Unmarshal(raw, &id.Claims) // claims are informative; the subject is what counts
		}
		next(w, r, id)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
