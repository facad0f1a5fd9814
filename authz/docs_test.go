package authz

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTroubleshootingListsEveryReason: docs/troubleshooting.md names every reason the service
// can give, with the description clients see. The reasons are read from the source of every
// package that makes them (each Reason literal: &Reason{…}, &token.Reason{…}, &authz.Reason{…})
// and from the path and proof refusals this package wraps, so a new reason cannot be added
// without its entry.
func TestTroubleshootingListsEveryReason(t *testing.T) {
	page, err := os.ReadFile("../docs/troubleshooting.md")
	require.NoError(t, err)
	doc := string(page)

	reasons := map[string]string{}
	for _, r := range append(PathReasons, ProofReasons...) {
		reasons[r.Code] = r.Description
	}
	var files []string
	for _, dir := range []string{".", "../token", "../token/introspect", "../policy", "../policy/stepup", "../grpcapi", "../httpapi"} {
		fs, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		files = append(files, fs...)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if !isReason(lit.Type) || len(lit.Elts) != 2 {
				return true
			}
			code, ok1 := value(lit.Elts[0]).(*ast.BasicLit)
			desc, ok2 := value(lit.Elts[1]).(*ast.BasicLit)
			if ok1 && ok2 {
				c, _ := strconv.Unquote(code.Value)
				d, _ := strconv.Unquote(desc.Value)
				reasons[c] = d
			}
			return true
		})
	}
	require.Greater(t, len(reasons), 40, "the reasons were found")
	for code, desc := range reasons {
		row := "| `" + code + "` | " + desc + " |"
		assert.True(t, strings.Contains(doc, row), "docs/troubleshooting.md lacks the row %q", row)
	}
}

// isReason reports whether a composite literal's type is Reason (here or in token and authz).
func isReason(e ast.Expr) bool {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name == "Reason"
	case *ast.SelectorExpr:
		return t.Sel.Name == "Reason"
	}
	return false
}

// value is an element's value, keyed (Code: "x") or not.
func value(e ast.Expr) ast.Expr {
	if kv, ok := e.(*ast.KeyValueExpr); ok {
		return kv.Value
	}
	return e
}
