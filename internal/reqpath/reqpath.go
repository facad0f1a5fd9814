// Package reqpath brings the path of an HTTP request target to the one canonical form that route
// policies judge, or refuses it when common upstreams would read it in different ways.
//
// A route policy is only as safe as the path it matches: if the policy and the upstream disagree
// on what a request names, a request can be judged by one rule and served by another. The
// canonical form is what nginx, Envoy (with or without normalize_path), Go's net/http and
// Express all agree a path names, and a request whose meaning depends on which of them reads
// it is refused.
//
// The canonical form of the path part of an origin-form target (the query is dropped):
//   - percent-encoded octets are decoded when the character may appear raw in a path segment
//     (RFC 3986 unreserved, sub-delims, ":" and "@"): upstreams route on the decoded path, so
//     "/api/%6Dessages" and "/api/messages" are one path; every other octet is written
//     percent-encoded with upper-case hex (so a raw space, a raw non-ASCII byte and their
//     encodings are one path too);
//   - dot segments are removed (RFC 3986 §5.2.4, their encoded spellings included) and repeated
//     slashes merged;
//   - a trailing slash, letter case, ";" and a format suffix are kept: they are Readings, not
//     normalisation.
//
// Refused (ErrRefused wraps each): a target that is not an absolute path (absolute-form,
// authority-form, "*"), a fragment ("#": Envoy rejects it, nginx and Express end the path
// there, Go keeps it), an encoded "/" or "\" (%2F, %5C: nginx decodes it into a separator, Go
// and Envoy keep it inside a segment), a raw "\" (Envoy and browsers read it as "/"), control
// characters and spaces raw or encoded (NUL truncates paths in C servers), a malformed
// percent-encoding, an encoded "%" that spells another escape (%2541: a second decoding
// changes the path), bytes that are not UTF-8, dot segments that climb above the root (nginx
// answers 400, Go and Envoy clamp at "/"), and dot segments next to repeated slashes where
// merging before or after resolving them gives different paths (nginx and Go merge first,
// Envoy resolves first), and a target that starts with "//" (a URI parser reads what follows
// as a host).
package reqpath

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrRefused is wrapped by every refusal.
var ErrRefused = errors.New("request path refused")

// Refusal is why a path was refused. Code is stable (logs, metrics); Description is a fixed
// sentence safe to show a client: it never contains anything taken from the request.
type Refusal struct {
	Code        string
	Description string
}

func (r *Refusal) Error() string { return r.Description }

// Unwrap lets errors.Is(err, ErrRefused) recognise every refusal.
func (r *Refusal) Unwrap() error { return ErrRefused }

// The refusals.
var (
	ErrNotOriginForm  = &Refusal{"not_origin_form", "The request target is not an absolute path"}
	ErrFragment       = &Refusal{"fragment", "The request target has a fragment"}
	ErrEncodedSlash   = &Refusal{"encoded_slash", "The request path has an encoded slash or backslash"}
	ErrBackslash      = &Refusal{"backslash", "The request path has a backslash"}
	ErrControl        = &Refusal{"control_character", "The request path has a control character or space"}
	ErrBadEscape      = &Refusal{"bad_escape", "The request path has a malformed percent-encoding"}
	ErrDoubleEncoding = &Refusal{"double_encoding", "The request path has a double percent-encoding"}
	ErrNotUTF8        = &Refusal{"not_utf8", "The request path is not UTF-8"}
	ErrAboveRoot      = &Refusal{"above_root", "The request path climbs above the root"}
	ErrAmbiguousDots  = &Refusal{"ambiguous_dot_segments", "The request path has dot segments next to repeated slashes"}
	// ErrLeadingSlashes: "//host/path" is a network-path reference to a URI parser (Java's
	// HttpServer, WHATWG URL, java.net.URI): it reads "host" as an authority and routes "/path",
	// where nginx and Envoy merge the slashes and route "/host/path".
	ErrLeadingSlashes = &Refusal{"leading_double_slash", "The request target starts with //, which some servers read as a host"}
)

// Refusals lists every refusal, for metrics and documentation.
var Refusals = []*Refusal{ErrNotOriginForm, ErrFragment, ErrEncodedSlash, ErrBackslash, ErrControl,
	ErrBadEscape, ErrDoubleEncoding, ErrNotUTF8, ErrAboveRoot, ErrAmbiguousDots, ErrLeadingSlashes}

// Path is a request path in canonical form.
type Path struct {
	// Canonical is the canonical form of the path, without the query.
	Canonical string
	// params is the canonical form with ";" parameters removed from every segment, as Tomcat,
	// Jetty and Spring read it; empty when the path has no ";".
	params string
}

// Parse returns the canonical form of target's path (a request target as sent: origin-form,
// query string allowed), or a *Refusal.
func Parse(target string) (Path, error) {
	if target == "" || target[0] != '/' {
		return Path{}, ErrNotOriginForm
	}
	if len(target) > 1 && target[1] == '/' {
		return Path{}, ErrLeadingSlashes
	}
	p, _, _ := strings.Cut(target, "?")
	if isCanonical(p) {
		// The common case costs one scan and no allocation.
		out := Path{Canonical: p}
		if strings.IndexByte(p, ';') >= 0 {
			var err error
			if out.params, err = normalise(stripParams(p)); err != nil {
				return Path{}, err
			}
		}
		return out, nil
	}
	decoded, err := decode(p)
	if err != nil {
		return Path{}, err
	}
	canonical, err := normalise(decoded)
	if err != nil {
		return Path{}, err
	}
	out := Path{Canonical: encode(canonical)}
	if strings.IndexByte(decoded, ';') >= 0 {
		params, err := normalise(stripParams(decoded))
		if err != nil {
			return Path{}, err
		}
		out.params = encode(params)
	}
	return out, nil
}

// isCanonical reports whether p is already canonical: only characters a segment may hold raw,
// no percent sign, no empty segment (but a trailing one), no dot segment.
func isCanonical(p string) bool {
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if !rawOK[p[i]] {
				return false
			}
			continue
		}
		seg := p[segStart:i]
		switch {
		case seg == "" && i < len(p): // "//"
			return false
		case seg == "." || seg == "..":
			return false
		}
		segStart = i + 1
	}
	return true
}

// decode percent-decodes p, refusing what must not appear in a path, raw or encoded.
func decode(p string) (string, error) {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", ErrBadEscape
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			switch {
			case v == '/' || v == '\\':
				return "", ErrEncodedSlash
			case v < 0x20 || v == 0x7f:
				return "", ErrControl
			}
			b.WriteByte(v)
			i += 2
		case c == '\\':
			return "", ErrBackslash
		case c == '#':
			return "", ErrFragment
		case c <= 0x20 || c == 0x7f:
			return "", ErrControl
		default:
			b.WriteByte(c)
		}
	}
	d := b.String()
	if !utf8.ValidString(d) {
		return "", ErrNotUTF8
	}
	// A decoded "%" can only come from %25; followed by two hex digits it spells an escape that
	// a second decoding (some frameworks, nginx's proxy_pass with a URI) would turn into
	// another character.
	for i := strings.IndexByte(d, '%'); i >= 0; {
		if i+2 < len(d) && isHex(d[i+1]) && isHex(d[i+2]) {
			return "", ErrDoubleEncoding
		}
		next := strings.IndexByte(d[i+1:], '%')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return d, nil
}

// normalise removes dot segments and merges repeated slashes in a decoded absolute path. nginx
// and Go merge slashes first, Envoy resolves dot segments first; where the two orders give
// different paths, the path is refused.
func normalise(d string) (string, error) {
	segs := strings.Split(d[1:], "/")
	hasDots, hasEmpty := false, false
	for i, s := range segs {
		switch {
		case s == "." || s == "..":
			hasDots = true
		case s == "" && i < len(segs)-1:
			hasEmpty = true
		}
	}
	if !hasDots && !hasEmpty {
		return d, nil
	}
	mergedFirst, err := removeDots(mergeSlashes(segs))
	if err != nil {
		return "", err
	}
	if hasDots && hasEmpty {
		resolvedFirst, err := removeDots(segs)
		if err != nil {
			return "", err
		}
		if join(mergeSlashes(resolvedFirst)) != join(mergedFirst) {
			return "", ErrAmbiguousDots
		}
	}
	return join(mergedFirst), nil
}

// mergeSlashes drops empty segments but a trailing one (which is a trailing slash).
func mergeSlashes(segs []string) []string {
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		if s != "" || i == len(segs)-1 {
			out = append(out, s)
		}
	}
	return out
}

// removeDots is RFC 3986 §5.2.4 on a list of segments, except that climbing above the root is
// an error rather than clamped.
func removeDots(segs []string) ([]string, error) {
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) == 0 {
				return nil, ErrAboveRoot
			}
			out = out[:len(out)-1]
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "") // "/a/." and "/a/b/.." end with a slash
		}
	}
	return out, nil
}

func join(segs []string) string { return "/" + strings.Join(segs, "/") }

// stripParams removes ";" and what follows it up to the end of each segment.
func stripParams(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for seg := range strings.SplitSeq(p[1:], "/") {
		b.WriteByte('/')
		s, _, _ := strings.Cut(seg, ";")
		b.WriteString(s)
	}
	return b.String()
}

// encode writes a decoded path in canonical form: characters a segment may hold raw as they
// are, every other byte percent-encoded with upper-case hex.
func encode(d string) string {
	n := 0
	for i := 0; i < len(d); i++ {
		if !rawOK[d[i]] && d[i] != '/' {
			n++
		}
	}
	if n == 0 {
		return d
	}
	var b strings.Builder
	b.Grow(len(d) + 2*n)
	for i := 0; i < len(d); i++ {
		c := d[i]
		if rawOK[c] || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

// rawOK marks the characters a path segment holds unencoded in canonical form (RFC 3986 pchar
// without pct-encoded): unreserved, sub-delims, ":" and "@".
var rawOK = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~!$&'()*+,;=:@", byte(c)) >= 0
	}
	return t
}()

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// Reading is one way an upstream may read a request path: the path to match, and how rule
// patterns must be read to match it alike.
type Reading struct {
	Path string
	// Fold: letters are folded (see Fold), in Path and in the patterns it is matched against
	// (Express routes ASCII letters case-insensitively by default; Spring with case-insensitive
	// matching, ASP.NET and others fold non-ASCII letters too).
	Fold bool
	// NoTrailingSlash: a trailing slash is dropped, from Path and from the patterns (Express
	// routes "/x/" as "/x" by default; Spring did before 6).
	NoTrailingSlash bool
	// NoParameters: ";" parameters are dropped from the segments (Tomcat, Jetty, Spring).
	NoParameters bool
	// NoSuffix: a format suffix is dropped from the last segment (Rails routes "/x.json" to
	// "/x(.:format)", Spring's legacy suffix patterns "/x.json" to "/x"). Patterns are read as
	// written: the reading names the route of the stem, which serves the suffixed spelling.
	NoSuffix bool
}

// Options say which readings besides the canonical one an upstream may make.
type Options struct {
	CaseInsensitive bool // letters may be routed case-insensitively
	TrailingSlash   bool // "/x/" may be routed as "/x", and "/x" as "/x/"
	Parameters      bool // ";" may start parameters that are dropped from a segment (Tomcat, Jetty, Spring)
	FormatSuffix    bool // "/x.json" may be routed as "/x" (Rails, Spring's suffix patterns)
	// AlwaysFold and AlwaysSlash add the folded and unslashed readings even when the path does
	// not change under them: a pattern with upper-case letters or a trailing slash does.
	AlwaysFold, AlwaysSlash bool
}

// MaxReadings bounds how many readings Readings returns: the canonical path and its ";"-less
// form, each folded or not, with or without its trailing slash (8), and each of those without
// its suffix cut at the last segment's first dot and at its last (8 × 3).
const MaxReadings = 24

// Readings appends to dst the readings of p under o, the canonical one first, and returns the
// extended slice. A path that no option changes has one reading, and costs no allocation when
// dst has room. Only a path that folding changes allocates (its folded form): the other
// readings are substrings.
func (p Path) Readings(dst []Reading, o Options) []Reading {
	start := len(dst)
	dst = append(dst, Reading{Path: p.Canonical})
	if o.Parameters && p.params != "" && p.params != p.Canonical {
		dst = append(dst, Reading{Path: p.params, NoParameters: true})
	}
	if o.CaseInsensitive {
		for i, n := start, len(dst); i < n; i++ {
			r := dst[i]
			if f := Fold(r.Path); o.AlwaysFold || f != r.Path {
				r.Path, r.Fold = f, true
				dst = append(dst, r)
			}
		}
	}
	if o.TrailingSlash {
		for i, n := start, len(dst); i < n; i++ {
			if r := dst[i]; o.AlwaysSlash || HasTrailingSlash(r.Path) {
				r.Path, r.NoTrailingSlash = TrimTrailingSlash(r.Path), true
				dst = append(dst, r)
			}
		}
	}
	// Readings only fold letters and drop a slash or parameters: without a dot in the paths
	// they come from, none has a suffix (one scan instead of one per reading).
	if o.FormatSuffix && (strings.IndexByte(p.Canonical, '.') >= 0 || strings.IndexByte(p.params, '.') >= 0) {
		for i, n := start, len(dst); i < n; i++ {
			r := dst[i]
			r.NoSuffix = true
			first, last := suffixStems(r.Path)
			if first != "" {
				r.Path = first
				dst = append(dst, r)
			}
			if last != "" && last != first {
				r.Path = last
				dst = append(dst, r)
			}
		}
	}
	return dst
}

// suffixStems returns p without the format suffix of its last segment: cut at the segment's
// first dot (Spring's "/x" + ".*" matches "/x.tar.gz") and at its last (Rails' format is
// "[^/.?]+": "/x.tar(.:format)" matches "/x.tar.gz"); "" for a cut that does not exist. An
// empty suffix counts (Spring's "*" matches nothing: "/x." is "/x"), and so does an empty stem
// ("/x/.env" is "/x/" to Spring's "/x/" + ".*"). A stem that is a dot segment ("/x/..b" cut to
// "/x/.") is left out: servers resolve it away, so no route names it.
func suffixStems(p string) (first, last string) {
	seg := strings.LastIndexByte(p, '/') + 1
	i := strings.IndexByte(p[seg:], '.')
	if i < 0 {
		return "", ""
	}
	j := strings.LastIndexByte(p[seg:], '.')
	first, last = p[:seg+i], p[:seg+j]
	if s := last[seg:]; s == "." || s == ".." {
		last = ""
	}
	return first, last
}

// HasTrailingSlash reports whether p ends with a slash that is not the root.
func HasTrailingSlash(p string) bool { return len(p) > 1 && p[len(p)-1] == '/' }

// TrimTrailingSlash drops a trailing slash that is not the root.
func TrimTrailingSlash(p string) string {
	if HasTrailingSlash(p) {
		return p[:len(p)-1]
	}
	return p
}

// Fold returns a canonical path (or a rule pattern written like one) with every letter mapped
// to one key for all the letters that case-insensitive routers take for it: ASCII letters and
// the percent-encoded UTF-8 of other letters, which is decoded, folded and encoded again (a
// folded letter in ASCII is written raw, as canonical form has it). Everything else is kept as
// it is: escapes of ASCII characters, and — which canonical form never holds, so a pattern
// holding them matches no reading, folded or not — escapes with lower-case hex, escapes that are
// not UTF-8 and raw bytes outside ASCII. Fold(Fold(p)) == Fold(p), and the folded form of a
// canonical path is canonical.
//
// The key of a letter r is ToLower(ToUpper(r)). Java's String.equalsIgnoreCase — what Spring's
// AntPathMatcher compares literal segments with when matching case-insensitively, on the
// decoded path — takes two chars for equal when they are, when their upper cases are, or when
// the lower cases of their upper cases are: exactly when their keys are. So "/admİn" (U+0130),
// "/admın" (U+0131), "/api/Keys" with the Kelvin sign (U+212A) and "/api/keyſ" (U+017F) fold
// to "/admin" and "/api/keys" as they match there. The key is also the same for a letter, its
// upper, lower and title case and its Unicode simple case folding orbit (tested for every
// rune), so it equates what .NET's OrdinalIgnoreCase (upper cases), Spring's PathPattern (lower
// cases) and Unicode simple folding (JavaScript's /iu, Go's (?i)) equate.
func Fold(p string) string {
	// Most paths have neither a capital nor an escape: one tight scan says so.
	start := 0
	for start < len(p) && !foldStarts[p[start]] {
		start++
	}
	if start == len(p) {
		return p
	}
	var b strings.Builder // the folded form, once it differs from p
	done := 0             // p[:done] is in b
	for i := start; i < len(p); {
		c, n, key := p[i], 1, rune(-1)
		switch {
		case 'A' <= c && c <= 'Z':
			key = rune(c) + 'a' - 'A'
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			n = 3 // an escape is copied whole, its hex untouched, unless its letter folds
			if r, size := escapedRune(p[i:]); size > 0 {
				n = size
				if k := foldRune(r); k != r {
					key = k
				}
			}
		}
		if key >= 0 {
			if b.Len() == 0 {
				b.Grow(len(p))
			}
			b.WriteString(p[done:i])
			writeRune(&b, key)
			done = i + n
		}
		i += n
	}
	if b.Len() == 0 {
		return p
	}
	b.WriteString(p[done:])
	return b.String()
}

// foldStarts marks the bytes where Fold may have work: capitals and escapes.
var foldStarts = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	t['%'] = true
	return t
}()

// foldRune is the key of a letter: see Fold.
func foldRune(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }

// escapedRune decodes the non-ASCII character whose UTF-8 bytes s begins with, each written
// %XX with upper-case hex as canonical form writes them, and returns it with the length of its
// escapes; size is 0 when s does not begin so.
func escapedRune(s string) (r rune, size int) {
	var buf [utf8.UTFMax]byte
	n := 0
	for ; n < len(buf) && 3*n+2 < len(s) && s[3*n] == '%' && isUpperHex(s[3*n+1]) && isUpperHex(s[3*n+2]); n++ {
		buf[n] = unhex(s[3*n+1])<<4 | unhex(s[3*n+2])
		if n == 0 && buf[0] < utf8.RuneSelf {
			return 0, 0
		}
		if utf8.FullRune(buf[:n+1]) {
			n++
			break
		}
	}
	r, w := utf8.DecodeRune(buf[:n])
	if n == 0 || w != n || r == utf8.RuneError {
		return 0, 0
	}
	return r, 3 * n
}

// writeRune writes r as canonical form does: raw when a segment may hold it, else its UTF-8
// bytes percent-encoded with upper-case hex.
func writeRune(b *strings.Builder, r rune) {
	if r < utf8.RuneSelf && rawOK[r] {
		b.WriteByte(byte(r))
		return
	}
	var buf [utf8.UTFMax]byte
	for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }
