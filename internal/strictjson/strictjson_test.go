package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestObject(t *testing.T) {
	many := func(last string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range 40 {
			fmt.Fprintf(&b, `"m%d":%d,`, i, i)
		}
		b.WriteString(last + "}")
		return b.String()
	}
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"claims", `{"iss":"x","exp":1,"scp":["a","b"],"cnf":{"jkt":"t"}}`, nil},
		{"empty object", ` {} `, nil},
		{"case variant", `{"exp":1,"Exp":2}`, ErrFoldedNames},
		{"upper case variant", `{"aud":"a","AUD":"b"}`, ErrFoldedNames},
		{"exact duplicate", `{"sub":"a","sub":"b"}`, ErrFoldedNames},
		{"escaped duplicate", `{"exp":1,"\u0065xp":2}`, ErrFoldedNames},
		{"escaped case variant", `{"scp":[],"\u0053CP":["admin"]}`, ErrFoldedNames},
		{"kelvin sign folds to k", `{"kid":"a","\u212aid":"b"}`, ErrFoldedNames},
		{"long s folds to s", `{"sub":"a","\u017fub":"b"}`, ErrFoldedNames},
		{"dotless i, as Java's equalsIgnoreCase reads it", `{"iss":"a","\u0131ss":"b"}`, ErrFoldedNames},
		{"dotted capital I, as Java's equalsIgnoreCase reads it", `{"isAdmin":true,"\u0130sAdmin":false}`, ErrFoldedNames},
		{"Kelvin sign", `{"kid":"a","\u212aid":"b"}`, ErrFoldedNames},
		{"nested case variant", `{"address":{"country":"US","Country":"FR"}}`, ErrFoldedNames},
		{"in an array", `{"a":[{"x":1,"X":2}]}`, ErrFoldedNames},
		{"same name at other levels", `{"x":{"x":{"x":1}},"y":[{"x":1},{"x":2}]}`, nil},
		{"invalid UTF-8 names read alike", "{\"a\xff\":1,\"a\xfe\":2}", ErrFoldedNames},
		{"many members, duplicate last", many(`"M39":1`), ErrFoldedNames},
		{"many members", many(`"last":1`), nil},
		{"not an object", `["exp"]`, ErrNotObject},
		{"string", `"x"`, ErrNotObject},
		{"invalid", `{"exp":1`, ErrInvalid},
		{"trailing garbage", `{}{}`, ErrInvalid},
		{"empty", ``, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Object([]byte(tc.in), func(_, _ []byte) error { return nil })
			assert.ErrorIs(t, err, tc.want, "Object(%s)", tc.in)
			if tc.want == nil {
				assert.NoError(t, err)
			}
		})
	}
}

func TestObjectMembers(t *testing.T) {
	in := `{ "iss" : "https://x" , "\u0065xp":1.5e9,"scp":["a", "b"],"cnf":{"jkt":"t"},"n":null,"t":true}`
	var names, values []string
	collect := func(name, value []byte) error {
		names, values = append(names, string(name)), append(values, string(value))
		return nil
	}
	require.NoError(t, Object([]byte(in), collect))
	assert.Equal(t, []string{"iss", "exp", "scp", "cnf", "n", "t"}, names)
	assert.Equal(t, []string{`"https://x"`, "1.5e9", `["a", "b"]`, `{"jkt":"t"}`, "null", "true"}, values)

	stop := errors.New("stop")
	n := 0
	err := Object([]byte(in), func(_, _ []byte) error { n++; return stop })
	assert.ErrorIs(t, err, stop)
	assert.Equal(t, 1, n, "fn's error stops the walk")
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`"abc"`, "abc", true},
		{`"a\"b\u00e9"`, "a\"bé", true},
		{"\"a\xffb\"", "a\uFFFDb", true},
		{`null`, "", true},
		{`1`, "", false},
		{`["a"]`, "", false},
	} {
		got, ok := String([]byte(tc.in))
		assert.Equal(t, tc.ok, ok, "String(%s) ok", tc.in)
		assert.Equal(t, tc.want, got, "String(%s)", tc.in)
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{`[]`, []string{}, true},
		{`[ "a" , "b\u0063" ]`, []string{"a", "bc"}, true},
		{`["a",1]`, nil, false},
		{`["a",null]`, nil, false},
		{`"a"`, nil, false},
		{`[["a"]]`, nil, false},
	} {
		got, ok := Strings([]byte(tc.in))
		assert.Equal(t, tc.ok, ok, "Strings(%s) ok", tc.in)
		assert.Equal(t, tc.want, got, "Strings(%s)", tc.in)
	}
}

// foldedDuplicates is the reference: encoding/json's tokenizer, and every pair of names in each
// object compared with bytes.EqualFold.
func foldedDuplicates(data []byte) (bool, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object bool
		names  []string
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{object: v == '{', key: v == '{'})
				continue
			default:
				stack = stack[:len(stack)-1]
				continue
			}
		case string:
			if top != nil && top.object && top.key {
				for _, n := range top.names {
					if bytes.EqualFold([]byte(n), []byte(v)) {
						return true, nil
					}
				}
				top.names = append(top.names, v)
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

// asDecoded is a name as encoding/json decodes it: each invalid byte replaced by U+FFFD.
func asDecoded(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // ranging over a string yields U+FFFD for each invalid byte
	}
	return b.String()
}

func FuzzObject(f *testing.F) {
	for _, s := range []string{`{"exp":1,"Exp":2}`, `{"a":{"b":[1,{"c":"\u0063"}]},"A ":2}`,
		`{"\u212aid":1,"kid":2}`, `{}`, `{"a":"\ud800"}`, "{\"a\xff\":1}", `{"x":[[],{}],"y":-1.5E+3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var top map[string]json.RawMessage
		var members []string
		err := Object(data, func(name, value []byte) error {
			members = append(members, string(name))
			// Every value is a valid JSON value on its own.
			if !json.Valid(value) {
				t.Fatalf("member %q: value %q is not valid JSON", name, value)
			}
			return nil
		})
		isObject := json.Unmarshal(data, &top) == nil
		dup, refErr := foldedDuplicates(data)
		switch {
		case !json.Valid(data):
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("invalid JSON %q accepted (err %v)", data, err)
			}
			return
		case refErr != nil:
			t.Skip() // valid but the reference tokenizer disagrees: nothing to compare
		case !isObject:
			if err == nil {
				t.Fatalf("%q is not an object but was accepted", data)
			}
			return
		case dup:
			if !errors.Is(err, ErrFoldedNames) {
				t.Fatalf("%q has folded duplicate names but got %v", data, err)
			}
			return
		case err != nil:
			t.Fatalf("%q refused: %v", data, err)
		}
		// Accepted: the members are the object's, in the same order Members reads them.
		if len(members) != len(top) {
			t.Fatalf("%q: %d members walked, %d decoded", data, len(members), len(top))
		}
		for _, m := range members {
			if _, ok := top[asDecoded(m)]; !ok {
				t.Fatalf("%q: member %q walked but not decoded", data, m)
			}
		}
		var again []string
		if err := Members(data, func(name, _ []byte) error { again = append(again, string(name)); return nil }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(again) != fmt.Sprint(members) {
			t.Fatalf("Members %q, Object %q", again, members)
		}
	})
}
