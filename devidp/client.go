package devidp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// RequestToken asks the token endpoint of the issuer at issuerURL for a client-credentials
// access token (client_secret_basic) and returns it.
func RequestToken(ctx context.Context, client *http.Client, issuerURL, clientID, secret, scope string) (string, error) {
	return RequestDPoPToken(ctx, client, issuerURL, clientID, secret, scope, nil)
}

// RequestDPoPToken is RequestToken with a DPoP proof signed by key, for a DPoP-bound token
// (RFC 9449 §5); with a nil key it asks for a bearer token.
func RequestDPoPToken(ctx context.Context, client *http.Client, issuerURL, clientID, secret, scope string, key jwk.Key) (string, error) {
	return requestToken(ctx, client, issuerURL, clientID, secret, scope, key, false)
}

// RequestOpaqueToken is RequestToken for an opaque token, which only introspection reads (the
// dev issuer's token_format=opaque).
func RequestOpaqueToken(ctx context.Context, client *http.Client, issuerURL, clientID, secret, scope string) (string, error) {
	return requestToken(ctx, client, issuerURL, clientID, secret, scope, nil, true)
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

func requestToken(ctx context.Context, client *http.Client, issuerURL, clientID, secret, scope string, key jwk.Key, opaque bool) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	if opaque {
		form.Set("token_format", "opaque")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(issuerURL, "/")+"/v1/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	if key != nil {
		proof, err := Proof(key, http.MethodPost, req.URL.String(), "", time.Now())
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
