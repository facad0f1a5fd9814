package devidp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// RequestToken asks the token endpoint of the issuer at issuerURL for a client-credentials
// access token (client_secret_basic) and returns it.
func RequestToken(ctx context.Context, client *http.Client, issuerURL, clientID, secret, scope string) (string, error) {
	return RequestTokenWith(ctx, client, issuerURL, clientID, secret, TokenOptions{Scope: scope})
}

// RequestDPoPToken is RequestToken with a DPoP proof signed by key, for a DPoP-bound token
// (RFC 9449 §5); with a nil key it asks for a bearer token.
func RequestDPoPToken(ctx context.Context, client *http.Client, issuerURL, clientID, secret, scope string, key jwk.Key) (string, error) {
	return RequestTokenWith(ctx, client, issuerURL, clientID, secret, TokenOptions{Scope: scope, DPoPKey: key})
}

// RequestOpaqueToken is RequestToken for an opaque token, which only introspection reads (the
// dev issuer's token_format=opaque).
func RequestOpaqueToken(ctx context.Context, client *http.Client, issuerURL, clientID, secret, scope string) (string, error) {
	return RequestTokenWith(ctx, client, issuerURL, clientID, secret, TokenOptions{Scope: scope, Opaque: true})
}

// TokenOptions say what token to ask for.
type TokenOptions struct {
	Scope string
	// DPoPKey, when set, proves a DPoP key: the token is bound to it.
	DPoPKey jwk.Key
	// Opaque asks for an opaque token (token_format=opaque).
	Opaque bool
	// ACR and AuthTime, when set, say how and when a user authenticated (the token's acr and
	// auth_time), as Okta's tokens do after a sign-in: for step-up rules (RFC 9470). Dev-only
	// token request parameters: a client-credentials grant has no user.
	ACR      string
	AuthTime time.Time
}

// RevokeToken asks the revocation endpoint of the issuer at issuerURL to revoke token (RFC
// 7009, client_secret_basic).
func RevokeToken(ctx context.Context, client *http.Client, issuerURL, clientID, secret, token string) error {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(issuerURL, "/")+"/v1/revoke", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation endpoint answered %s", resp.Status)
	}
	return nil
}

// RequestTokenWith asks the token endpoint of the issuer at issuerURL for a client-credentials
// access token as o says (client_secret_basic) and returns it.
func RequestTokenWith(ctx context.Context, client *http.Client, issuerURL, clientID, secret string, o TokenOptions) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if o.Scope != "" {
		form.Set("scope", o.Scope)
	}
	if o.Opaque {
		form.Set("token_format", "opaque")
	}
	if o.ACR != "" {
		form.Set("acr", o.ACR)
	}
	if !o.AuthTime.IsZero() {
		form.Set("auth_time", strconv.FormatInt(o.AuthTime.Unix(), 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(issuerURL, "/")+"/v1/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	if o.DPoPKey != nil {
		proof, err := Proof(o.DPoPKey, http.MethodPost, req.URL.String(), "", time.Now())
		if err != nil {
			return "", err
		}
		req.Header.Set("DPoP", proof)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("token endpoint answered %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		return "", fmt.Errorf("token endpoint answered %s: %s: %s", resp.Status, body.Error, body.Description)
	}
	return body.AccessToken, nil
}
