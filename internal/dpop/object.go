package dpop

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// object reads a JSON object's members by their exact names: JSON member names are
// case-sensitive (RFC 8259), so "Htu" is another member than "htu". It refuses an object that
// readers could understand differently — a struct decoder such as encoding/json's matches
// names case-insensitively and lets the last duplicate win, other JOSE libraries take the
// first: a member named twice (after unescaping, so "h\u0074m" is "htm"), or a case variant
// of a name in read (by Unicode simple folding, as encoding/json folds: "JTI", "jw\u212a"). A
// case variant of a name not read is another member and passes. The result holds every
// member's raw value; nothing but whitespace may follow the object.
func object(b []byte, read ...string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		name, isName := tok.(string)
		if err != nil || !isName {
			return nil, errNotObject
		}
		if _, dup := members[name]; dup {
			return nil, errors.New("a member is named twice")
		}
		for _, r := range read {
			if name != r && strings.EqualFold(name, r) {
				return nil, errors.New("a member's name is a case variant of " + r)
			}
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errNotObject
		}
		members[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotObject
	}
	return members, nil
}

var errNotObject = errors.New("not one JSON object")

// stringMember reads members[name] as a JSON string; absent or null is "".
func stringMember(members map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := members[name]
	if !ok {
		return "", true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}
