package reqpath

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

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
		{"/api//messages", "/api/messages", ""},
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
		// A URI parser (Java's HttpServer, WHATWG URL) reads "api.example" as a host.
		{"//api.example/api/messages", ErrLeadingSlashes},
		{"//api//messages", ErrLeadingSlashes},
		{"///api/messages", ErrLeadingSlashes},
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
	all := Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true, FormatSuffix: true}
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

		// Letters that Java's equalsIgnoreCase equates with ASCII ones, encoded and raw.
		{"dotted capital I", "/adm%C4%B0n", all, []Reading{{Path: "/adm%C4%B0n"}, {Path: "/admin", Fold: true}}},
		{"dotted capital I, raw", "/adm\u0130n", all, []Reading{{Path: "/adm%C4%B0n"}, {Path: "/admin", Fold: true}}},
		{"dotless i, lower-case hex", "/adm%c4%b1n", all, []Reading{{Path: "/adm%C4%B1n"}, {Path: "/admin", Fold: true}}},
		{"Kelvin sign", "/api/%E2%84%AAeys", all, []Reading{{Path: "/api/%E2%84%AAeys"}, {Path: "/api/keys", Fold: true}}},
		{"Kelvin sign, raw", "/api/\u212Aeys", all, []Reading{{Path: "/api/%E2%84%AAeys"}, {Path: "/api/keys", Fold: true}}},
		{"long s", "/api/key%C5%BF", all, []Reading{{Path: "/api/key%C5%BF"}, {Path: "/api/keys", Fold: true}}},
		{"long s, raw", "/api/key\u017f", all, []Reading{{Path: "/api/key%C5%BF"}, {Path: "/api/keys", Fold: true}}},
		{"other letters fold among themselves", "/CAF%C3%89", all, []Reading{{Path: "/CAF%C3%89"}, {Path: "/caf%C3%A9", Fold: true}}},
		{"a folded non-ASCII path: one reading", "/caf%C3%A9", all, []Reading{{Path: "/caf%C3%A9"}}},
		{"non-ASCII, case off", "/adm%C4%B0n", Options{}, []Reading{{Path: "/adm%C4%B0n"}}},

		// Format suffixes.
		{"suffix", "/admin.json", all, []Reading{{Path: "/admin.json"}, {Path: "/admin", NoSuffix: true}}},
		{"suffix of a deeper path", "/api/keys.json", all, []Reading{{Path: "/api/keys.json"}, {Path: "/api/keys", NoSuffix: true}}},
		{"two suffixes: Spring's first dot, Rails' last", "/a/b.tar.gz", all, []Reading{
			{Path: "/a/b.tar.gz"}, {Path: "/a/b", NoSuffix: true}, {Path: "/a/b.tar", NoSuffix: true}}},
		{"an empty suffix", "/admin.", all, []Reading{{Path: "/admin."}, {Path: "/admin", NoSuffix: true}}},
		{"an empty stem", "/x/.env", all, []Reading{{Path: "/x/.env"}, {Path: "/x/", NoSuffix: true}}},
		{"no dot segment as a stem", "/x/..b", all, []Reading{{Path: "/x/..b"}, {Path: "/x/", NoSuffix: true}}},
		{"dots before the last segment are no suffix", "/v1.2/keys", all, []Reading{{Path: "/v1.2/keys"}}},
		{"suffix off", "/admin.json", Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true}, []Reading{{Path: "/admin.json"}}},
		{"suffix, case and slash", "/Admin.json/", all, []Reading{
			{Path: "/Admin.json/"}, {Path: "/admin.json/", Fold: true},
			{Path: "/Admin.json", NoTrailingSlash: true}, {Path: "/admin.json", Fold: true, NoTrailingSlash: true},
			{Path: "/Admin", NoTrailingSlash: true, NoSuffix: true}, {Path: "/admin", Fold: true, NoTrailingSlash: true, NoSuffix: true},
		}},
		{"suffix and parameters", "/admin.json;x", all, []Reading{
			{Path: "/admin.json;x"}, {Path: "/admin.json", NoParameters: true},
			{Path: "/admin", NoSuffix: true}, {Path: "/admin", NoParameters: true, NoSuffix: true},
		}},
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

func TestReadingsNeverExceedMaxReadings(t *testing.T) {
	all := Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true, FormatSuffix: true, AlwaysFold: true, AlwaysSlash: true}
	p, err := Parse("/A.b.c;x.y.z") // AlwaysSlash: its unslashed readings keep their suffixes
	require.NoError(t, err)
	got := p.Readings(nil, all)
	assert.Len(t, got, MaxReadings, "every reading of a path that every option changes: %v", got)
}

func TestFold(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/api/messages", "/api/messages"},
		{"/API/Messages", "/api/messages"},
		{"/adm%C4%B0n", "/admin"},          // İ U+0130
		{"/adm%C4%B1n", "/admin"},          // ı U+0131
		{"/api/%E2%84%AAeys", "/api/keys"}, // K U+212A Kelvin sign
		{"/api/key%C5%BF", "/api/keys"},    // ſ U+017F
		{"/%C3%89T%C3%89", "/%C3%A9t%C3%A9"},
		{"/%CE%A3%CF%82", "/%CF%83%CF%83"},                   // Σ and final ς are both σ
		{"/%C3%9F", "/%C3%9F"},                               // ß has no one-letter upper case: kept
		{"/a%20B%22", "/a%20b%22"},                           // ASCII escapes are kept, hex and all
		{"/%F0%9F%98%80A", "/%F0%9F%98%80a"},                 // a 4-byte character that does not fold
		{"/%F0%90%90%80", "/%F0%90%90%A8"},                   // Deseret 𐐀 folds to 𐐨
		{"/%c4%b0/%C4/%C4%41/%ZZ", "/%c4%b0/%C4/%C4%41/%zz"}, // not canonical: kept but ASCII letters
		{"/a%", "/a%"},
		{"/a%C", "/a%c"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, Fold(tt.in))
			assert.Equal(t, tt.want, Fold(tt.want), "Fold is idempotent")
		})
	}
}

// javaEqualsIgnoreCaseASCII is every character outside ASCII that Java's String.equalsIgnoreCase
// takes for an ASCII letter, found by comparing every code point with every ASCII character
// (OpenJDK 17.0.15, Unicode 13); newer Unicode versions may add case pairs but never to an
// existing letter such as ASCII's.
var javaEqualsIgnoreCaseASCII = map[rune]rune{0x130: 'i', 0x131: 'i', 0x17F: 's', 0x212A: 'k'}

// TestFoldEquatesWhatCaseInsensitiveRoutersEquate: the key of every rune is the same as the keys
// of its upper, lower and title cases and of every rune in its simple case folding orbit, and
// the runes outside ASCII whose key is ASCII are exactly those Java's equalsIgnoreCase equates
// with an ASCII letter.
func TestFoldEquatesWhatCaseInsensitiveRoutersEquate(t *testing.T) {
	toASCII := map[rune]rune{}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		k := foldRune(r)
		if r >= utf8.RuneSelf && k < utf8.RuneSelf {
			toASCII[r] = k
		}
		for _, other := range []rune{unicode.ToUpper(r), unicode.ToLower(r), unicode.ToTitle(r), k} {
			if foldRune(other) != k {
				t.Fatalf("%U folds to %U but %U to %U", r, k, other, foldRune(other))
			}
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if foldRune(f) != k {
				t.Fatalf("%U folds to %U but %U, of its case folding orbit, to %U", r, k, f, foldRune(f))
			}
		}
	}
	assert.Equal(t, javaEqualsIgnoreCaseASCII, toASCII)
}

func TestParseCommonPathAllocatesNothing(t *testing.T) {
	var buf [MaxReadings]Reading
	all := Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true, FormatSuffix: true}
	for _, target := range []string{"/api/messages?page=2", "/api/messages.json"} {
		allocs := testing.AllocsPerRun(100, func() {
			p, err := Parse(target)
			if err != nil {
				t.Fatal(err)
			}
			_ = p.Readings(buf[:0], all)
		})
		assert.Zero(t, allocs, target)
	}
	// Suffix readings are substrings, and letters that are folded already are not copied: only
	// a path that folding changes costs an allocation (Parse of an escape costs its own).
	p, err := Parse("/caf%C3%A9/x.tar.gz")
	require.NoError(t, err)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = p.Readings(buf[:0], all) }))
}

// FuzzParse: the canonical form is idempotent, is itself canonical, holds only characters a
// path may carry, and every reading of it is a canonical path too; the folded form is the
// decoded path with every character folded by foldRune, encoded again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/", "/api/messages", "/a/../b", "/a//b/", "/%2e%2E/x", "/a%2Fb", "/a;b/..;/c",
		"/caf%C3%A9", "/a%25%32%46", "/A/B/", "/x?y#z", "/a/./b/../../c", "/\xff", "//", "/.;/",
		"/adm%C4%B0n", "/adm\u0131n", "/api/%E2%84%AAeys", "/api/key%c5%bf", "/CAF%C3%89", "/admin.json",
		"/a.b.c;x.y/", "/x/..b", "/.env", "/%F0%90%90%80.JSON"} {
		f.Add(s)
	}
	all := Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true, FormatSuffix: true}
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
		decoded, err := url.PathUnescape(c)
		if err != nil {
			t.Fatalf("Parse(%q) = %q does not decode: %v", target, c, err)
		}
		if want, got := encode(strings.Map(foldRune, decoded)), Fold(c); got != want {
			t.Fatalf("Fold(%q) = %q, want %q", c, got, want)
		}
		readings := p.Readings(nil, all)
		if len(readings) > MaxReadings {
			t.Fatalf("%q has %d readings", target, len(readings))
		}
		for _, r := range readings {
			rp, err := Parse(r.Path)
			if err != nil || rp.Canonical != r.Path {
				t.Fatalf("reading %+v of %q is not canonical (%v)", r, target, err)
			}
			if r.Fold && Fold(r.Path) != r.Path {
				t.Fatalf("folded reading %+v of %q folds again to %q", r, target, Fold(r.Path))
			}
		}
	})
}

// BenchmarkReadings is Parse and Readings with every reading on, for an ordinary path and for
// paths that readings change.
func BenchmarkReadings(b *testing.B) {
	var buf [MaxReadings]Reading
	o := Options{CaseInsensitive: true, TrailingSlash: true, Parameters: true, FormatSuffix: true}
	for _, target := range []string{"/api/messages?page=2", "/API/Messages;x/", "/api/messages.json", "/adm%C4%B0n.json"} {
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
