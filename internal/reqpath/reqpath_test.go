package reqpath

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	tests := []struct {
		target, want string
		params       string // the ;-stripped reading, when there is one
	}{
		{"/", "/", ""},
		{"/api/messages", "/api/messages", ""},
		{"/api/messages?x=1#y", "/api/messages", ""}, // a "#" in the query is the query's business
		{"/api/messages/", "/api/messages/", ""},     // trailing slash kept (a Reading)
		{"/API/Messages", "/API/Messages", ""},       // case kept (a Reading)
		// percent-encoded characters a segment may hold raw are decoded
		{"/api/%6Dessages", "/api/messages", ""},
		{"/api/%6dessages", "/api/messages", ""},
		{"/%61%70%69/messages", "/api/messages", ""},
		{"/users/a%40b", "/users/a@b", ""},
		{"/a%3Ab%2Cc%21%7E", "/a:b,c!~", ""},
		// everything else is encoded, upper-case hex
		{"/files/a%20b", "/files/a%20b", ""},
		{"/q%3f", "/q%3F", ""},
		{"/caf%c3%a9", "/caf%C3%A9", ""},
		{"/caf\xc3\xa9", "/caf%C3%A9", ""},
		{"/a%22b", "/a%22b", ""},
		{"/a\"b", "/a%22b", ""},
		{"/100%25", "/100%25", ""},
		{"/a%25zz", "/a%25zz", ""},
		// dot segments, raw and encoded
		{"/a/./b", "/a/b", ""},
		{"/a/b/../c", "/a/c", ""},
		{"/a/%2e%2E/c", "/c", ""},
		{"/a/.%2e/c", "/c", ""},
		{"/a/b/..", "/a/", ""},
		{"/a/.", "/a/", ""},
		{"/public/../api/messages", "/api/messages", ""},
		{"/public/%2E%2E/api/messages", "/api/messages", ""},
		{"/...", "/...", ""},
		{"/a/..b/c", "/a/..b/c", ""},
		// repeated slashes
		{"//api//messages", "/api/messages", ""},
		{"/api/messages//", "/api/messages/", ""},
		{"/a//b/./c", "/a/b/c", ""},
		// ";" parameters are kept, and read without
		{"/api/messages;jsessionid=1", "/api/messages;jsessionid=1", "/api/messages"},
		{"/public/..;/admin", "/public/..;/admin", "/admin"},
		{"/public/%2e%2e;/admin", "/public/..;/admin", "/admin"},
		{"/a;x/b;y", "/a;x/b;y", "/a/b"},
		{"/a%3Bx", "/a;x", "/a"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			p, err := Parse(tt.target)
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.Canonical)
			assert.Equal(t, tt.params, p.params)
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		target string
		want   *Refusal
	}{
		{"", ErrNotOriginForm},
		{"*", ErrNotOriginForm},
		{"api/messages", ErrNotOriginForm},
		{"http://evil/api/messages", ErrNotOriginForm},
		{"example.com:443", ErrNotOriginForm},
		{"/api/messages#frag", ErrFragment},
		{"/public#/../api/messages", ErrFragment},
		{"/public/..%2Fapi/messages", ErrEncodedSlash},
		{"/public%2f..%2fapi", ErrEncodedSlash},
		{"/public/..%5Capi", ErrEncodedSlash},
		{"/public/..%5capi", ErrEncodedSlash},
		{"/public\\..\\api", ErrBackslash},
		{"/a\\b", ErrBackslash},
		{"/a%00b", ErrControl},
		{"/a%0Ab", ErrControl},
		{"/a%0d", ErrControl},
		{"/a%7F", ErrControl},
		{"/a\x00b", ErrControl},
		{"/a b", ErrControl},
		{"/a\tb", ErrControl},
		{"/a\x7f", ErrControl},
		{"/a%", ErrBadEscape},
		{"/a%4", ErrBadEscape},
		{"/a%zz", ErrBadEscape},
		{"/a%%30%30", ErrBadEscape},
		{"/api/mes%2573ages", ErrDoubleEncoding},
		{"/a%252e%252e/b", ErrDoubleEncoding},
		{"/a%25%32%46", ErrDoubleEncoding},
		{"/a%ff", ErrNotUTF8},
		{"/a\xff", ErrNotUTF8},
		{"/%c0%af", ErrNotUTF8},
		{"/..", ErrAboveRoot},
		{"/../api/messages", ErrAboveRoot},
		{"/a/../../b", ErrAboveRoot},
		{"/%2e%2e/b", ErrAboveRoot},
		{"/a//../b", ErrAmbiguousDots},
		{"/a/b//../../c", ErrAmbiguousDots},
		{"/..;/admin", ErrAboveRoot}, // Tomcat reads /../admin
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			_, err := Parse(tt.target)
			assert.Equal(t, tt.want, err)
			assert.True(t, errors.Is(err, ErrRefused))
		})
	}
}

func TestReadings(t *testing.T) {
	all := Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true}
	tests := []struct {
		name, target string
		opts         Options
		want         []Reading
	}{
		{"plain path: one reading", "/api/messages", all, []Reading{{Path: "/api/messages"}}},
		{"case", "/API/messages", all, []Reading{{Path: "/API/messages"}, {Path: "/api/messages", Fold: true}}},
		{"case off", "/API/messages", Options{}, []Reading{{Path: "/API/messages"}}},
		{"trailing slash", "/api/messages/", all, []Reading{{Path: "/api/messages/"}, {Path: "/api/messages", NoTrailingSlash: true}}},
		{"root keeps its slash", "/", all, []Reading{{Path: "/"}}},
		{"parameters", "/public/..;/admin", all, []Reading{{Path: "/public/..;/admin"}, {Path: "/admin", NoParameters: true}}},
		{"everything", "/A;x/", all, []Reading{
			{Path: "/A;x/"}, {Path: "/A/", NoParameters: true},
			{Path: "/a;x/", Fold: true}, {Path: "/a/", Fold: true, NoParameters: true},
			{Path: "/A;x", NoTrailingSlash: true}, {Path: "/A", NoTrailingSlash: true, NoParameters: true},
			{Path: "/a;x", Fold: true, NoTrailingSlash: true}, {Path: "/a", Fold: true, NoTrailingSlash: true, NoParameters: true},
		}},
		{"patterns with capitals", "/api", Options{CaseInsensitive: true, AlwaysFold: true},
			[]Reading{{Path: "/api"}, {Path: "/api", Fold: true}}},
		{"patterns with slashes", "/api", Options{TrailingSlash: true, AlwaysSlash: true},
			[]Reading{{Path: "/api"}, {Path: "/api", NoTrailingSlash: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.target)
			require.NoError(t, err)
			got := p.Readings(nil, tt.opts)
			assert.Equal(t, tt.want, got)
			assert.LessOrEqual(t, len(got), MaxReadings)
		})
	}
}

func TestParseCommonPathAllocatesNothing(t *testing.T) {
	var buf [MaxReadings]Reading
	allocs := testing.AllocsPerRun(100, func() {
		p, err := Parse("/api/messages?page=2")
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Readings(buf[:0], Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true})
	})
	assert.Zero(t, allocs)
}

// FuzzParse: the canonical form is idempotent, is itself canonical, holds only characters a
// path may carry, and every reading of it is a canonical path too (folded, for a folded one).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/", "/api/messages", "/a/../b", "/a//b/", "/%2e%2E/x", "/a%2Fb", "/a;b/..;/c",
		"/caf%C3%A9", "/a%25%32%46", "/A/B/", "/x?y#z", "/a/./b/../../c", "/\xff", "//", "/.;/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		p, err := Parse(target)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Parse(%q): error %v is not a refusal", target, err)
			}
			return
		}
		c := p.Canonical
		again, err := Parse(c)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which is refused: %v", target, c, err)
		}
		if again.Canonical != c {
			t.Fatalf("not idempotent: %q → %q → %q", target, c, again.Canonical)
		}
		if !isCanonical(c) && !strings.Contains(c, "%") {
			t.Fatalf("Parse(%q) = %q is not canonical", target, c)
		}
		if strings.ContainsAny(c, "?#\\ \x00") || strings.Contains(c, "//") {
			t.Fatalf("Parse(%q) = %q holds a character it must not", target, c)
		}
		for _, r := range p.Readings(nil, Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true}) {
			rp, err := Parse(r.Path)
			want := rp.Canonical
			if r.Fold {
				want = strings.ToLower(want) // folded readings fold the hex of escapes too
			}
			if err != nil || want != r.Path {
				t.Fatalf("reading %q of %q is not canonical (%v)", r.Path, target, err)
			}
		}
	})
}

// BenchmarkReadings is Parse and Readings with every reading on, for an ordinary path and for
// paths that readings change.
func BenchmarkReadings(b *testing.B) {
	var buf [MaxReadings]Reading
	o := Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true}
	for _, target := range []string{"/api/messages?page=2", "/API/Messages;x/"} {
		b.Run(target, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := Parse(target)
				if err != nil {
					b.Fatal(err)
				}
				_ = p.Readings(buf[:0], o)
			}
		})
	}
}
