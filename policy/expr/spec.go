package expr

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Spec is a policy file's cel value: one expression or a list of them (all must hold), each
// with its place in the file, so that a mistake is reported at its own line and column.
type Spec []source

type source struct {
	text         string
	line, column int
	style        yaml.Style
}

// UnmarshalYAML reads the expressions and their places. A mistake is a *yaml.TypeError, which
// lets the decoder go on: the policy's shape check reports it with the file's others.
func (s *Spec) UnmarshalYAML(n *yaml.Node) error {
	if msg := s.ShapeError(n); msg != "" {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
	}
	for _, item := range items(n) {
		*s = append(*s, source{text: item.Value, line: item.Line, column: item.Column, style: item.Style})
	}
	return nil
}

// ShapeError says what is wrong with a cel value's shape ("" when nothing is).
func (*Spec) ShapeError(n *yaml.Node) string {
	for _, item := range items(n) {
		if item.Kind != yaml.ScalarNode {
			return "cel must be an expression or a list of expressions"
		}
	}
	return ""
}

// items are the expression nodes of a cel value, aliases resolved.
func items(n *yaml.Node) []*yaml.Node {
	list := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		list = n.Content
	}
	out := make([]*yaml.Node, len(list))
	for i, item := range list {
		if item.Kind == yaml.AliasNode && item.Alias != nil {
			item = item.Alias
		}
		out[i] = item
	}
	return out
}

// Compile compiles every expression for kind. Each problem is an error that starts with its
// place in the file ("line L, column C: "), then where (what the caller calls the value, with
// the expression's index in a list), then the problem; file is the file's lines.
func (s Spec) Compile(kind Kind, where string, file []string) ([]*Program, []error) {
	var out []*Program
	var errs []error
	for i, src := range s {
		prg, problems := Compile(src.text, kind)
		name := where
		if len(s) > 1 {
			name = fmt.Sprintf("%s[%d]", where, i)
		}
		for _, p := range problems {
			errs = append(errs, fmt.Errorf("%s: %s: %s", src.at(p, file), name, p.Message))
		}
		if prg != nil {
			out = append(out, prg)
		}
	}
	return out, errs
}

// at is where line and column (1-based) of the expression fall in the file: exactly for an
// expression on one line (plain or quoted; escapes before the column aside) and for a literal
// block (|); otherwise the expression's start, and the position within it.
func (s source) at(p Problem, file []string) string {
	switch s.style {
	case 0, yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if !strings.Contains(s.text, "\n") && p.Line == 1 {
			quote := 0
			if s.style != 0 {
				quote = 1
			}
			return fmt.Sprintf("line %d, column %d", s.line, s.column+quote+p.Column-1)
		}
	case yaml.LiteralStyle:
		if l := s.line + p.Line; l <= len(file) {
			first := s.line // the block's indentation is its first non-blank line's
			for first < len(file) && strings.TrimSpace(file[first]) == "" {
				first++
			}
			if first < len(file) {
				indent := len(file[first]) - len(strings.TrimLeft(file[first], " "))
				return fmt.Sprintf("line %d, column %d", l, indent+p.Column)
			}
		}
	}
	return fmt.Sprintf("line %d, column %d (the expression's line %d, column %d)", s.line, s.column, p.Line, p.Column)
}
