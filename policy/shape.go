package policy

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// shapeErrors checks a policy file's YAML against the shape of policyFile before it is decoded,
// so that every misplaced or misspelt key and every value of the wrong kind is reported at
// once, each with its line and column, in the file's own terms (a decoder stops at the first
// unknown key and names Go types). Unknown keys get the nearest known one as a suggestion.
func shapeErrors(doc *yaml.Node) []error {
	if doc == nil || len(doc.Content) == 0 {
		return nil
	}
	w := shapeWalk{aliased: map[aliasUse]bool{}}
	w.walk(doc.Content[0], reflect.TypeFor[policyFile](), "the file")
	return w.errs
}

type shapeWalk struct {
	errs []error
	// aliased are the anchored nodes walked already, each as the type it was checked for: an
	// alias is checked once per place it can stand, however often it is used there, so that a
	// file of aliases to aliases costs no more to check than to read.
	aliased map[aliasUse]bool
}

type aliasUse struct {
	n *yaml.Node
	t reflect.Type
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (w *shapeWalk) walk(n *yaml.Node, t reflect.Type, where string) {
	at := n // errors point where the value is used, an alias's place rather than its anchor's
	if n.Kind == yaml.AliasNode {
		use := aliasUse{n.Alias, t}
		if n.Alias == nil || w.aliased[use] {
			return
		}
		w.aliased[use] = true
		n = n.Alias
	}
	fail := func(format string, a ...any) {
		w.errs = append(w.errs, fmt.Errorf("line %d, column %d: %s", at.Line, at.Column, fmt.Sprintf(format, a...)))
	}
	if n.Tag == "!!null" {
		return // an empty value: the field's zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		// Decodes itself; what says its shape is reported here, with every other mistake.
		if c, ok := reflect.New(t).Interface().(interface{ ShapeError(*yaml.Node) string }); ok {
			if msg := c.ShapeError(n); msg != "" {
				fail("%s: %s", where, msg)
			}
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			fail("%s must be a mapping (key: value), not %s", where, kindOf(n))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("line %d, column %d: %s has no key %q", k.Line, k.Column, where, k.Value)
				if s := suggest(k.Value, fields); s != "" {
					msg += fmt.Sprintf("; did you mean %q?", s)
				} else {
					msg += " (it has " + strings.Join(slices.Sorted(maps.Keys(fields)), ", ") + ")"
				}
				w.errs = append(w.errs, fmt.Errorf("%s", msg))
				continue
			}
			w.walk(v, f.Type, keyWhere(where, k.Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			fail("%s must be a list, not %s", where, kindOf(n))
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", where, i))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			fail("%s must be true or false, not %s", where, kindOf(n))
		}
	case reflect.Int, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			fail("%s must be a whole number, not %s", where, kindOf(n))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			fail("%s must be a single value, not %s", where, kindOf(n))
		}
	}
	// interface{} (a claim's expected value) takes any YAML.
}

// keyWhere names a key inside where: "rules[0].require".
func keyWhere(where, key string) string {
	if where == "the file" {
		return key
	}
	return where + "." + key
}

func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// yamlFields maps a struct's YAML keys to its fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() && name == "" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

// suggest returns the known key nearest to key, when it is near enough to be a slip: the same
// up to case, dashes for underscores, or a plural, or within a small edit distance.
func suggest(key string, known map[string]reflect.StructField) string {
	norm := func(s string) string {
		return strings.TrimSuffix(strings.ReplaceAll(strings.ToLower(s), "-", "_"), "s")
	}
	best, bestD := "", len(key)/3+2
	for k := range known {
		if norm(k) == norm(key) {
			return k
		}
		if d := editDistance(strings.ToLower(key), k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if bestD > max(2, len(key)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes: keys are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

var errLine = regexp.MustCompile(`^line (\d+)`)

// byLine orders a report's errors by the line they start with (stable, so the errors of one
// line keep their order).
func byLine(errs []error) {
	line := func(err error) int {
		if m := errLine.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return 0
	}
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(line(a), line(b)) })
}
