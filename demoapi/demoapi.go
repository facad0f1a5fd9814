// Package demoapi is the protected API of Okta's Node/Express resource-server quickstart, as a
// Go HTTP handler: GET /api/messages returns messages, GET /secure echoes the caller's verified
// identity, GET /healthz is for probes. Two routes show the route policy's step-up and
// credential places: GET /api/settings echoes the identity too (the demo policy asks a second
// factor in the last 10 minutes for it), and GET /api/events is a WebSocket (browsers cannot
// set Authorization on one: the demo policy takes its token from the query string) that sends
// one message saying what the API received, and closes.
//
// It does no token verification of its own: the proxy in front (Envoy, nginx) asks the authz
// service and forwards the identity in x-authz-* headers. As defence in depth, the protected
// routes refuse requests that arrive without those headers. It must only be reachable through
// the proxy: anyone who can reach it directly can forge the headers.
package demoapi

import (
	"crypto/sha1"
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
	mux.Handle("GET /api/settings", requireIdentity(func(w http.ResponseWriter, _ *http.Request, id *Identity) {
		writeJSON(w, http.StatusOK, id)
	}))
	mux.Handle("GET /api/events", requireIdentity(events))
	return mux
}

// Event is what /api/events sends: the request target and the headers the API received, so
// that a client sees that the proxy kept its token from the API.
type Event struct {
	Subject   string `json:"sub"`
	Target    string `json:"target"`
	WebSocket bool   `json:"websocket"`
	// Credentials are the credential headers that reached the API (none should).
	Credentials []string `json:"credentials"`
}

// events answers a WebSocket handshake (RFC 6455 §4.2.2) with one text message, the Event,
// then a close frame; a plain GET gets the Event as JSON.
func events(w http.ResponseWriter, r *http.Request, id *Identity) {
	ev := Event{Subject: id.Subject, Target: r.URL.RequestURI(), Credentials: []string{}}
	for _, h := range []string{"Authorization", "Dpop", "Cookie", "X-Api-Token"} {
		if len(r.Header.Values(h)) > 0 {
			ev.Credentials = append(ev.Credentials, h)
		}
	}
	key := r.Header.Get("Sec-Websocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		writeJSON(w, http.StatusOK, ev)
		return
	}
	ev.WebSocket = true
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	defer conn.Close()
	accept := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	payload, _ := json.Marshal(ev)
	_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(accept[:]) + "\r\n\r\n")
	_, _ = buf.Write(textFrame(payload))
	_, _ = buf.Write([]byte{0x88, 0x00}) // close
	_ = buf.Flush()
}

// textFrame is an unmasked WebSocket text frame (a server's) holding payload (under 64 KiB).
func textFrame(payload []byte) []byte {
	frame := []byte{0x81}
	if n := len(payload); n < 126 {
		frame = append(frame, byte(n))
	} else {
		frame = append(frame, 126, byte(n>>8), byte(n))
	}
	return append(frame, payload...)
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
