package expr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// Headers are a request's headers, read only when an expression reads request.headers.
type Headers interface {
	// Each calls fn with every header (a repeated one once per value), its name lower-case.
	Each(fn func(name, value string))
}

// Vars are the values one evaluation reads. The request's are set by the caller; the values
// expressions see are built from them only when an expression names them, once per Vars.
type Vars struct {
	// Method and Path are the reading's: the method and canonical path the rule is judged under.
	Method, Path string
	// Host is the request's host as the proxy routes on it, without the port.
	Host    string
	Headers Headers
	// Hidden reports whether a header (lower-case name) must not be shown: the credentials,
	// and the headers that carry the raw request target (with its query string).
	Hidden            func(name string) bool
	ContextExtensions map[string]string
	Now               time.Time
	// The token's: its verified claims (nil for a match expression), scopes, and issuer (the
	// configured name), client and subject.
	Claims                    *Claims
	Scopes                    []string
	Issuer, ClientID, Subject string

	act activation
}

// activation resolves the variables for CEL, building each value once.
func (v *Vars) activation() *activation {
	v.act.v = v
	return &v.act
}

type activation struct {
	v              *Vars
	headers, scope ref.Val
}

func (a *activation) Parent() interpreter.Activation { return nil }

// str is a request's string as expressions read it: an error beyond MaxSize (whatever reads it
// refuses the request), which bounds the cost estimate of every expression.
func str(name, s string) ref.Val {
	if len(s) > MaxSize {
		return types.NewErr("%s is longer than %d bytes", name, MaxSize)
	}
	return types.String(s)
}

func (a *activation) ResolveName(name string) (any, bool) {
	v := a.v
	switch name {
	case varMethod:
		return str(name, v.Method), true
	case varPath:
		return str(name, v.Path), true
	case varHost:
		return str(name, v.Host), true
	case varHeaders:
		if a.headers == nil {
			a.headers = stringMap(name, v.headerMap())
		}
		return a.headers, true
	case varExtensions:
		return stringMap(name, v.ContextExtensions), true
	case varNow:
		return types.Timestamp{Time: v.Now}, true
	case varClaims:
		if v.Claims == nil {
			return nil, false
		}
		if v.Claims.err != nil {
			return types.NewErr("claims: %v", v.Claims.err), true
		}
		return v.Claims.val, true
	case varScopes:
		if a.scope == nil {
			a.scope = types.NewStringList(types.DefaultTypeAdapter, v.Scopes)
			if len(v.Scopes) > MaxSize {
				a.scope = types.NewErr("scopes: more than %d", MaxSize)
			}
		}
		return a.scope, true
	case varTokenIssuer:
		return str(name, v.Issuer), true
	case varTokenClientID:
		return str(name, v.ClientID), true
	case varTokenSubject:
		return str(name, v.Subject), true
	}
	return nil, false
}

// stringMap is a map of strings as expressions read it: an error beyond MaxHeaders names or
// MaxSize a name or value.
func stringMap(name string, m map[string]string) ref.Val {
	if len(m) > MaxHeaders {
		return types.NewErr("%s: more than %d names", name, MaxHeaders)
	}
	for k, val := range m {
		if len(k) > MaxSize || len(val) > MaxSize {
			return types.NewErr("%s: a value longer than %d bytes", name, MaxSize)
		}
	}
	return types.NewStringStringMap(types.DefaultTypeAdapter, m)
}

// headerMap is request.headers: lower-case names, the values of a repeated header joined with
// "," (as Envoy joins them), hidden headers left out.
func (v *Vars) headerMap() map[string]string {
	out := map[string]string{}
	if v.Headers == nil {
		return out
	}
	v.Headers.Each(func(name, value string) {
		name = strings.ToLower(name)
		if strings.HasPrefix(name, ":") || v.Hidden != nil && v.Hidden(name) {
			return // pseudo-headers: :path carries the query string; the others are variables
		}
		if prev, ok := out[name]; ok {
			value = prev + "," + value
		}
		out[name] = value
	})
	return out
}

// Claims are a token's claims as expressions read them, decoded once per token (the caller
// keeps them with the token): objects are maps, arrays lists, JSON numbers ints when they are
// whole and fit, doubles otherwise.
type Claims struct {
	val ref.Val
	err error
}

// NewClaims decodes a verified JSON payload (at most MaxSize bytes: a token's claims are
// smaller, an introspection answer that is not is an evaluation error).
func NewClaims(payload []byte) *Claims {
	if len(payload) > MaxSize {
		return &Claims{err: fmt.Errorf("more than %d bytes", MaxSize)}
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return &Claims{err: err}
	}
	val, err := toValue(m)
	return &Claims{val: val, err: err}
}

// toValue converts a decoded JSON value to CEL's, ahead of any evaluation.
func toValue(v any) (ref.Val, error) {
	switch x := v.(type) {
	case nil:
		return types.NullValue, nil
	case bool:
		return types.Bool(x), nil
	case string:
		return types.String(x), nil
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return types.Int(i), nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s: %v", x, err)
		}
		return types.Double(f), nil
	case []any:
		out := make([]ref.Val, len(x))
		for i, e := range x {
			var err error
			if out[i], err = toValue(e); err != nil {
				return nil, err
			}
		}
		return types.NewRefValList(types.DefaultTypeAdapter, out), nil
	case map[string]any:
		out := make(map[ref.Val]ref.Val, len(x))
		for k, e := range x {
			ev, err := toValue(e)
			if err != nil {
				return nil, err
			}
			out[types.String(k)] = ev
		}
		return types.NewRefValMap(types.DefaultTypeAdapter, out), nil
	}
	return nil, fmt.Errorf("unexpected JSON value %T", v)
}
