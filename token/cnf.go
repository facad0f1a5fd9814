package token

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/url"
	"strings"
)

// CertThumbprint is the base64url SHA-256 of the DER client certificate a proxy passed: a
// URL-encoded PEM (Envoy's source.certificate, nginx's $ssl_client_escaped_cert), a PEM, or
// base64 DER without PEM armour (Traefik's passTLSClientCert).
func CertThumbprint(passed string) (string, bool) {
	if passed == "" {
		return "", false
	}
	if strings.Contains(passed, "%") {
		// URL-encoded: Envoy (PercentEncoding::urlEncode) and nginx escape every reserved byte,
		// so a "+" left in it is base64's own.
		unescaped, err := url.PathUnescape(passed)
		if err != nil {
			return "", false
		}
		passed = unescaped
	}
	var der []byte
	if block, _ := pem.Decode([]byte(passed)); block != nil {
		if block.Type != "CERTIFICATE" {
			return "", false
		}
		der = block.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(passed), ""))
		if err != nil {
			return "", false
		}
		der = b
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return "", false
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), true
}
