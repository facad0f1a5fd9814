package policy

import (
	"path"
	"regexp"
	"strings"

	"github.com/platformauth/envoy-okta-authz/internal/reqpath"
)

// pathMatcher is a rule's path condition. It matches readings of the canonical request path
// (reqpath): a folded reading against patterns folded alike (reqpath.Fold), a reading without
// its trailing slash against patterns without theirs. A reading without its format suffix is
// matched against the patterns as written: it names the route of its stem.
type pathMatcher struct {
	kind pathKind
	// pat holds the exact path, prefix or glob for each way of reading: [fold][no trailing slash].
	pat        [2][2]string
	re, reFold *regexp.Regexp
}

type pathKind uint8

const (
	pathAny pathKind = iota
	pathExact
	pathPrefix
	pathGlob
	pathRegex
)

func newPathMatcher(kind pathKind, pattern string, re *regexp.Regexp) pathMatcher {
	m := pathMatcher{kind: kind, re: re}
	if re != nil {
		m.reFold = regexp.MustCompile(`(?i)` + re.String()) // re compiled, so this does too
	}
	for fold := range 2 {
		for slash := range 2 {
			p := pattern
			if fold == 1 {
				p = reqpath.Fold(p)
			}
			if slash == 1 {
				p = reqpath.TrimTrailingSlash(p)
			}
			m.pat[fold][slash] = p
		}
	}
	return m
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// match reports whether the reading rd of a request path satisfies the condition.
func (m *pathMatcher) match(rd reqpath.Reading) bool {
	p := rd.Path
	pat := m.pat[b2i(rd.Fold)][b2i(rd.NoTrailingSlash)]
	switch m.kind {
	case pathExact:
		return p == pat
	case pathPrefix:
		return hasPathPrefix(p, pat)
	case pathGlob:
		ok, _ := path.Match(pat, p)
		return ok
	case pathRegex:
		re := m.re
		if rd.Fold {
			re = m.reFold
		}
		// Without its trailing slash a reading stands for both spellings.
		return re.MatchString(p) || rd.NoTrailingSlash && re.MatchString(p+"/")
	}
	return true
}

// hasUpper and hasTrailingSlash say whether the pattern changes when read folded (it has
// letters in upper case, ASCII or encoded) or without its trailing slash: then every request
// needs that reading, whatever its own path.
func (m *pathMatcher) hasUpper() bool {
	if m.kind == pathRegex {
		return true // a regex may spell letters in ways a lower-case check cannot see
	}
	return m.pat[0][0] != m.pat[1][0]
}

func (m *pathMatcher) hasTrailingSlash() bool {
	return m.kind != pathAny && m.kind != pathRegex && m.pat[0][0] != m.pat[0][1]
}

// hasPathPrefix matches whole segments: /api matches /api and /api/x, not /apix.
func hasPathPrefix(p, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix)
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}
