package expr

import "testing"

func BenchmarkEval(b *testing.B) {
	for _, src := range []string{
		`claims.groups.exists(g, g.startsWith("team-"))`,
		`request.path.startsWith("/tenants/")`,
		`request.headers["x-tenant"] == claims.tenant`,
	} {
		b.Run(src, func(b *testing.B) {
			p, probs := Compile(src, Require)
			if len(probs) > 0 {
				b.Fatal(probs)
			}
			v := vars()
			b.ReportAllocs()
			for b.Loop() {
				v.act = activation{}
				if ok, err := p.Eval(v); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
