// Package strictjson reads JSON objects from untrusted input member by member, by exact name,
// and refuses objects whose member names a reader could take for one another.
//
// JSON member names are case-sensitive (RFC 8259), but Go's encoding/json (and go-json, and
// most struct-mapping decoders) match them to fields case-insensitively and let the last match
// win: {"exp":1,"Exp":2} decodes Exp as 2. And readers disagree on a repeated name: some take
// the first, some the last (RFC 7519 §4 lets a JWT reader reject duplicates or take the last).
// A token judged under one reading and read by the upstream under another is a bypass, so
// Object refuses any object, at any depth, with two member names that are equal case aside
// (SameName: Unicode simple case folding, and Java's equalsIgnoreCase, which also equates
// "ıss" and "İss" with "iss") — exact duplicates included. What it accepts means the same to every
// reader, and callers read the members they need by their exact names.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode"
	"unicode/utf8"
)

// The refusals.
var (
	ErrInvalid     = errors.New("not valid JSON")
	ErrNotObject   = errors.New("not a JSON object")
	ErrFoldedNames = errors.New("an object has two members whose names differ only in case, or are repeated")
)

// Object checks that data is one valid JSON object in which no object, at any depth, has two
// member names equal under case folding, and calls fn with the name (unescaped) and the raw
// value (a sub-slice of data) of each top-level member, in order. It stops at fn's first error
// and returns it. The name slice is valid only during the call.
func Object(data []byte, fn func(name, value []byte) error) error {
	if !json.Valid(data) {
		return ErrInvalid
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return ErrNotObject
	}
	_, err := walkObject(data, i, fn, true)
	return err
}

// Members calls fn for each top-level member of data, which must be an object that Object
// accepted before (the same bytes: a verified token's payload, recognised by its hash). It
// checks nothing, so it costs one pass over the bytes and no allocation.
func Members(data []byte, fn func(name, value []byte) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return ErrNotObject
	}
	_, err := walkObject(data, i, fn, false)
	return err
}

// String decodes a raw JSON value that must be a string (or null, which is ""), as
// encoding/json would: escapes resolved, invalid UTF-8 replaced by U+FFFD.
func String(raw []byte) (string, bool) {
	switch {
	case len(raw) >= 2 && raw[0] == '"':
		body := raw[1 : len(raw)-1]
		if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
			return string(body), true // the common case: nothing to unescape
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case string(raw) == "null":
		return "", true
	}
	return "", false
}

// walkObject walks the object starting at data[i] == '{' and returns the index after it. With
// check, it refuses folded duplicate names in this object and every object nested in it. fn,
// when set, hears each member of this object.
func walkObject(data []byte, i int, fn func(name, value []byte) error, check bool) (int, error) {
	var names nameSet
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return i + 1, nil
	}
	for {
		start := i
		end, escaped := skipString(data, i)
		name := data[start+1 : end-1]
		if escaped {
			var s string
			if json.Unmarshal(data[start:end], &s) != nil {
				return 0, ErrInvalid
			}
			name = []byte(s)
		}
		if check && !names.add(name) {
			return 0, ErrFoldedNames
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // the colon
		vstart := i
		var err error
		if i, err = skipValue(data, i, check); err != nil {
			return 0, err
		}
		if fn != nil {
			if err := fn(name, data[vstart:i]); err != nil {
				return 0, err
			}
		}
		i = skipSpace(data, i)
		if data[i] == '}' {
			return i + 1, nil
		}
		i = skipSpace(data, i+1) // the comma
	}
}

// skipValue returns the index after the valid JSON value at data[i].
func skipValue(data []byte, i int, check bool) (int, error) {
	switch data[i] {
	case '{':
		return walkObject(data, i, nil, check)
	case '[':
		i = skipSpace(data, i+1)
		if data[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skipValue(data, i, check); err != nil {
				return 0, err
			}
			i = skipSpace(data, i)
			if data[i] == ']' {
				return i + 1, nil
			}
			i = skipSpace(data, i+1)
		}
	case '"':
		end, _ := skipString(data, i)
		return end, nil
	}
	for i < len(data) && !delimiter[data[i]] {
		i++ // a number or literal
	}
	return i, nil
}

// skipString returns the index after the string starting at data[i] == '"', and whether it
// holds an escape.
func skipString(data []byte, i int) (int, bool) {
	escaped := false
	for i++; ; i++ {
		switch data[i] {
		case '"':
			return i + 1, escaped
		case '\\':
			escaped = true
			i++ // the escaped character (a \uXXXX's digits are plain)
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// delimiter marks the bytes that end a number or literal.
var delimiter = [256]bool{',': true, '}': true, ']': true, ' ': true, '\t': true, '\n': true, '\r': true}

// nameSet holds one object's member names for the folded-duplicate test: a linear scan while
// the object is small (claims sets are), a map of folded keys beyond, so that a hostile object
// with thousands of members costs linear time.
type nameSet struct {
	small [16][]byte
	n     int
	big   map[string]struct{}
}

// add reports whether name is new, case folding aside.
func (s *nameSet) add(name []byte) bool {
	if s.big == nil {
		for _, m := range s.small[:s.n] {
			if SameName(m, name) {
				return false
			}
		}
		if s.n < len(s.small) {
			s.small[s.n] = name
			s.n++
			return true
		}
		s.big = make(map[string]struct{}, 2*len(s.small))
		for _, m := range s.small[:s.n] {
			s.big[foldKey(m)] = struct{}{}
		}
	}
	k := foldKey(name)
	if _, dup := s.big[k]; dup {
		return false
	}
	s.big[k] = struct{}{}
	return true
}

// foldKey maps names that SameName equates to one string: each rune (an invalid byte reads as
// U+FFFD, as encoding/json reads it) is replaced by its key.
func foldKey(name []byte) string {
	out := make([]rune, 0, len(name))
	for len(name) > 0 {
		r, size := utf8.DecodeRune(name)
		name = name[size:]
		out = append(out, runeKey(r))
	}
	return string(out)
}

// SameName reports whether two member names are equal case aside, rune by rune: their keys
// are equal (runeKey).
func SameName(a, b []byte) bool {
	for len(a) > 0 && len(b) > 0 {
		ra, na := utf8.DecodeRune(a)
		rb, nb := utf8.DecodeRune(b)
		if ra != rb && runeKey(ra) != runeKey(rb) {
			return false
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) == len(b)
}

// runeKey is ToLower(ToUpper(r)): Java's String.equalsIgnoreCase takes two chars for equal
// exactly when their keys are (so U+0130 İ and U+0131 ı are i), and the key is the same across
// a rune's Unicode simple case folding orbit too (what bytes.EqualFold and encoding/json
// equate; reqpath.Fold's key, tested there for every rune).
func runeKey(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }

// Strings decodes a raw JSON value that must be an array of strings, as String decodes each.
// raw must be valid JSON (a member value Object or Members returned).
func Strings(raw []byte) ([]string, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	i := skipSpace(raw, 1)
	if raw[i] == ']' {
		return []string{}, true
	}
	var out []string
	for {
		if raw[i] != '"' {
			return nil, false
		}
		end, _ := skipString(raw, i)
		s, ok := String(raw[i:end])
		if !ok {
			return nil, false
		}
		out = append(out, s)
		i = skipSpace(raw, end)
		if raw[i] == ']' {
			return out, true
		}
		i = skipSpace(raw, i+1)
	}
}
