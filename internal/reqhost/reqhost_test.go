package reqhost

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in         string
		name, port string
		ok         bool
	}{
		{"", "", "", true},
		{"api.example.com", "api.example.com", "", true},
		{"API.Example.COM", "api.example.com", "", true},
		{"api.example.com.", "api.example.com", "", true},
		{"api.example.com:8443", "api.example.com", "8443", true},
		{"api.example.com.:8443", "api.example.com", "8443", true},
		{"localhost:9400", "localhost", "9400", true},
		{"my_host", "my_host", "", true},
		{"10.0.0.1:80", "10.0.0.1", "80", true},
		{"[::1]", "[::1]", "", true},
		{"[2001:DB8::1]:443", "[2001:db8::1]", "443", true},
		// nginx routes these on the part before the first colon; Envoy keeps them whole.
		{"admin.example.com:1:2", "", "", false},
		{"admin.example.com:", "", "", false},
		{"admin.example.com:x", "", "", false},
		{"admin.example.com:65536", "", "", false},
		{"admin.example.com:123456", "", "", false},
		{"admin.example.com:+1", "", "", false},
		// A DPoP htu built from these would end the authority early.
		{"api.example.com?", "", "", false},
		{"api.example.com#", "", "", false},
		{"api.example.com/", "", "", false},
		{"api.example.com/x", "", "", false},
		{"user@api.example.com", "", "", false},
		{"api.example.com%2F", "", "", false},
		{"api example.com", "", "", false},
		{"api.example.com\x00", "", "", false},
		{".example.com", "", "", false},
		{"api..example.com", "", "", false},
		{".", "", "", false},
		{":443", "", "", false},
		{"[::1", "", "", false},
		{"[::1]x", "", "", false},
		{"[::1]:", "", "", false},
		{"[fe80::1%25eth0]", "", "", false},
		{"[10.0.0.1]", "", "", false},
		{"ex\u0430mple.com", "", "", false}, // a Cyrillic a
		{strings.Repeat("a", 255), "", "", false},
	} {
		h, err := Parse(tc.in)
		if !tc.ok {
			assert.ErrorIs(t, err, ErrInvalid, "Parse(%q) = %+v", tc.in, h)
			continue
		}
		if assert.NoError(t, err, "Parse(%q)", tc.in) {
			assert.Equal(t, Host{tc.name, tc.port}, h, "Parse(%q)", tc.in)
		}
	}
}

// nginxHost is the host nginx routes on for a Host header: up to the first ":" outside an IPv6
// literal, lower-case, without a trailing dot (ngx_http_validate_host).
func nginxHost(s string) string {
	if !strings.HasPrefix(s, "[") {
		s, _, _ = strings.Cut(s, ":")
	} else if i := strings.IndexByte(s, ']'); i >= 0 {
		s = s[:i+1]
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// FuzzParse: what Parse accepts, nginx, Go's URL parser (which builds a DPoP htu's reading) and
// Parse itself again read as the same host and port.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"a.example.com:1:2", "[::1]:8080", "x.", "A_b-c.d:0", "h?:1", "[::ffff:1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s)
		if err != nil || s == "" {
			return
		}
		if got := nginxHost(s); got != h.Name {
			t.Fatalf("Parse(%q).Name = %q, nginx routes on %q", s, h.Name, got)
		}
		u, err := url.Parse("https://" + h.Authority() + "/p")
		if err != nil {
			t.Fatalf("%q: its authority %q does not parse in a URL: %v", s, h.Authority(), err)
		}
		if got := strings.ToLower(u.Host); got != h.Authority() || u.Port() != h.Port || u.Path != "/p" {
			t.Fatalf("%q: URL host %q port %q path %q, want %q", s, u.Host, u.Port(), u.Path, h.Authority())
		}
		again, err := Parse(h.Authority())
		if err != nil || again != h {
			t.Fatalf("%q: Parse(Authority()) = %+v, %v; want %+v", s, again, err, h)
		}
	})
}
