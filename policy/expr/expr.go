// Package expr compiles and evaluates the CEL conditions of a route policy (require.cel and
// match.cel): each expression is type-checked against the variables it may read when the policy
// loads, and evaluated, bounded in size and cost, against one request. An expression that cannot
// be evaluated is an error for the caller to refuse on, never a false that lets a request pass
// elsewhere and never a true.
//
// It knows nothing of rules, tokens or answers: the policy gives it values (Vars), and reads a
// bool or an error back. Request values are untrusted: the variables are built from them only
// when an expression reads them, and the credentials they carry (Authorization, DPoP, Cookie,
// the headers a rule reads a token from, the raw request target) are never among them.
package expr

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"

	_ "time/tzdata" // now.getHours("Europe/Amsterdam") must work in an image without a zone database
)

// Limits of one expression. MaxLength bounds what the parser reads; CostLimit bounds the work of
// one evaluation (CEL's cost units, about one per value visited or compared): a condition over a
// token's claims and a request's headers costs tens to hundreds, and one that would walk far more
// — hostile headers, a huge claim — stops with an error, which refuses the request.
const (
	MaxLength = 4096 // code points
	CostLimit = 100_000
)

// MaxSize bounds every value a variable may hold: a string's length, a list's or a map's
// size; and MaxHeaders the names in request.headers. A token's claims are at most a token's
// size (token.MaxTokenBytes); the request's values are refused (an evaluation error) beyond.
const (
	MaxSize    = 16 << 10
	MaxHeaders = 256
)

// bounds tells CEL's cost estimate the sizes the variables may have.
type bounds struct{}

func (bounds) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	path := n.Path()
	if len(path) == 0 {
		return nil // not a variable's: CEL's own estimate, or unknown (then the cost is tracked)
	}
	size := uint64(MaxSize)
	if (path[0] == varHeaders || path[0] == varExtensions) && len(path) == 1 {
		size = MaxHeaders
	}
	return &checker.SizeEstimate{Min: 0, Max: size}
}

func (bounds) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// Kind says where an expression stands in a rule, and so what it may read.
type Kind uint8

const (
	// Require is a rule's condition (require.cel): every variable.
	Require Kind = iota
	// Match selects the rule (match.cel): only the request and now. Which rule judges a request
	// never depends on its token, which the rule is to judge.
	Match
)

// The variables, as expressions name them.
const (
	varClaims         = "claims"
	varScopes         = "scopes"
	varMethod         = "request.method"
	varPath           = "request.path"
	varHost           = "request.host"
	varHeaders        = "request.headers"
	varExtensions     = "request.context_extensions"
	varNow            = "now"
	varTokenIssuer    = "token.issuer"
	varTokenClientID  = "token.client_id"
	varTokenSubject   = "token.subject"
	containerNoiseMsg = " (in container '')"
)

// requestVariables are what a match expression may read; a condition reads the token's too.
func requestVariables() []cel.EnvOption {
	strs := cel.MapType(cel.StringType, cel.StringType)
	return []cel.EnvOption{
		cel.Variable(varMethod, cel.StringType),
		cel.Variable(varPath, cel.StringType),
		cel.Variable(varHost, cel.StringType),
		cel.Variable(varHeaders, strs),
		cel.Variable(varExtensions, strs),
		cel.Variable(varNow, cel.TimestampType),
	}
}

func tokenVariables() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Variable(varClaims, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varScopes, cel.ListType(cel.StringType)),
		cel.Variable(varTokenIssuer, cel.StringType),
		cel.Variable(varTokenClientID, cel.StringType),
		cel.Variable(varTokenSubject, cel.StringType),
	}
}

// common are the options of both environments: the string extensions (lowerAscii, split, …),
// optional values (request.headers[?"x-tenant"].orValue("")), numbers compared across int and
// double (JSON numbers arrive as either), the size limit.
func common() []cel.EnvOption {
	return []cel.EnvOption{
		ext.Strings(), cel.OptionalTypes(), cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxLength), cel.DefaultUTCTimeZone(true),
	}
}

// envs are the two environments, built once (a CEL environment costs milliseconds to build).
var envs = sync.OnceValues(func() ([2]*cel.Env, error) {
	var out [2]*cel.Env
	req, err := cel.NewEnv(append(append(common(), requestVariables()...), tokenVariables()...)...)
	if err != nil {
		return out, err
	}
	match, err := cel.NewEnv(append(common(), requestVariables()...)...)
	out[Require], out[Match] = req, match
	return out, err
})

// Program is a compiled expression. It is immutable and safe for concurrent use.
type Program struct {
	src string
	prg cel.Program
	// readsMethod, readsPath: the expression reads request.method, request.path, which differ
	// between the readings of one request (see policy.EachReading).
	readsMethod, readsPath bool
}

// Problem is a mistake in an expression, at a line (1-based) and column (1-based, in code
// points) of the expression's own text.
type Problem struct {
	Line, Column int
	Message      string
}

// Compile parses and type-checks src for kind: it must be a condition (its type bool) that reads
// only the variables of its kind. It returns every problem found.
func Compile(src string, kind Kind) (*Program, []Problem) {
	es, err := envs()
	if err != nil {
		return nil, []Problem{{1, 1, "the CEL environment: " + err.Error()}}
	}
	if strings.TrimSpace(src) == "" {
		return nil, []Problem{{1, 1, "the expression is empty"}}
	}
	env := es[kind]
	checked, iss := env.Compile(src)
	if err := iss.Err(); err != nil {
		var out []Problem
		for _, e := range iss.Errors() {
			out = append(out, Problem{e.Location.Line(), e.Location.Column() + 1, strings.ReplaceAll(e.Message, containerNoiseMsg, "")})
		}
		if len(out) == 0 {
			out = append(out, Problem{1, 1, err.Error()})
		}
		return nil, out
	}
	if t := checked.OutputType(); !t.IsExactType(types.BoolType) {
		return nil, []Problem{{1, 1, fmt.Sprintf("the expression must be a condition (bool), not %s: compare it (== true) or test it", t)}}
	}
	// The cost limit is enforced by tracking an evaluation's cost as it runs, which costs more
	// than most conditions themselves: an expression whose worst case, over every value the
	// variables may hold (their sizes are bounded: see Vars), is within the limit runs without.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if est, err := env.EstimateCost(checked, bounds{}); err != nil || est.Max > CostLimit {
		opts = append(opts, cel.CostLimit(CostLimit))
	}
	prg, err := env.Program(checked, opts...)
	if err != nil {
		return nil, []Problem{{1, 1, err.Error()}}
	}
	p := &Program{src: src, prg: prg}
	ast.PostOrderVisit(checked.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if ref, ok := checked.NativeRep().ReferenceMap()[e.ID()]; ok {
			p.readsMethod = p.readsMethod || ref.Name == varMethod
			p.readsPath = p.readsPath || ref.Name == varPath
		}
	}))
	return p, nil
}

// Source is the expression as written (for explain and logs; never for clients).
func (p *Program) Source() string { return p.src }

// ReadsReading reports whether the expression reads request.method or request.path: then its
// value may differ between the readings of one request, and it is evaluated under each.
func (p *Program) ReadsReading() bool { return p.readsMethod || p.readsPath }

// ReadsMethod reports whether the expression reads request.method.
func (p *Program) ReadsMethod() bool { return p.readsMethod }

// ErrNotBool: an evaluation that gave something else than a bool (the type check rules it out;
// kept so that an unforeseen value refuses rather than passes).
var ErrNotBool = errors.New("the expression did not evaluate to a bool")

// Eval evaluates the expression with v's values: its value, or an error — a missing key, a
// value of the wrong type, the cost limit — that the caller must treat as a refusal.
func (p *Program) Eval(v *Vars) (bool, error) {
	out, _, err := p.prg.Eval(v.activation())
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, ErrNotBool
	}
	return b, nil
}
