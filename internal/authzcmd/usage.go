package authzcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

const commandsUsage = `Usage:
  authz [flags]                       run the service
  authz explain [flags] [TOKEN|-]     explain the decision on one token and request
  authz proxy-config [flags] PROXY    print the nginx, traefik or envoy configuration that
                                      mirrors the identity headers these flags and policy set
  authz healthcheck URL               exit 0 when URL answers 2xx (container health checks)
  authz version                       the version, revision and Go version (also --version)
  authz help [COMMAND]                this help, or a command's

Quick start without an Okta org: authz --dev (a dev issuer, the demo policy, a token to try).
`

// printUsage writes the help of command name: for the service, its commands and every flag;
// for a subcommand, its own flags, and the service flags by name only.
func printUsage(out io.Writer, name string, fs *flag.FlagSet, own map[string]bool) {
	switch name {
	case "authz":
		fmt.Fprint(out, commandsUsage)
	case "authz explain":
		fmt.Fprint(out, `Usage: authz explain [flags] [TOKEN|-]

Decides on TOKEN (the argument, or standard input when it is - or absent) for one request, as
the service would with the same flags and policy, and prints every step: the canonical path,
the rule each reading of it matched, the verification, and the answer a proxy would get. It
fetches the issuer's keys like the service: the issuer must be reachable (with --dev, a dev
issuer must be running: authz --dev, devidp, or go run ./cmd/devstack).
`)
	case "authz proxy-config":
		fmt.Fprint(out, `Usage: authz proxy-config [flags] nginx|traefik|envoy

Prints the part of the proxy's configuration that must mirror the identity headers the service
sets with these flags and --policy: headers copied from an allow, client copies cleared.
`)
	}
	fmt.Fprintf(out, "\nEvery flag can also be set by its environment twin (--jwks-url: AUTHZ_JWKS_URL); a flag on\nthe command line wins.\n")
	if own != nil {
		fmt.Fprint(out, "\nFlags of this command:\n")
		fs.VisitAll(func(f *flag.Flag) {
			if own[f.Name] {
				printFlag(out, f)
			}
		})
		var service []string
		fs.VisitAll(func(f *flag.Flag) {
			if !own[f.Name] {
				service = append(service, "--"+f.Name)
			}
		})
		fmt.Fprintf(out, "\nThe service's flags apply too (authz --help describes them), so that the answer is the\nservice's; most often --issuer or --dev, --audience and --policy. All of them:\n%s\n",
			wrap(strings.Join(service, " "), 92, "  "))
		return
	}
	fmt.Fprint(out, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) { printFlag(out, f) })
}

func printFlag(out io.Writer, f *flag.Flag) {
	kind, usage := flag.UnquoteUsage(f)
	if d, ok := f.Value.(described); ok {
		kind = d.kind
	}
	line := "  --" + f.Name
	if kind != "" {
		line += " " + kind
	}
	fmt.Fprintf(out, "%s\n%s\n", line, wrap(usage, 92, "      "))
	def := ""
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
		def = fmt.Sprintf("default %q, ", f.DefValue)
	}
	fmt.Fprintf(out, "      (%s%s)\n", def, envName(f.Name))
}

// wrap breaks s into lines of at most width characters, each starting with indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(s) {
		if len(line) > len(indent) && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	b.WriteString(line)
	return b.String()
}

// flagError rewrites the flag package's messages in the --flag spelling the help uses.
func flagError(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"flag provided but not defined: -", "flag needs an argument: -"} {
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			return strings.TrimSuffix(prefix, "-") + "--" + strings.TrimLeft(rest, "-")
		}
	}
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		// invalid value "5" for flag -leeway: <why>
		if v, after, ok := strings.Cut(rest, " for flag -"); ok {
			name, why, _ := strings.Cut(after, ": ")
			return fmt.Sprintf("--%s %s: %s", name, v, why)
		}
	}
	return msg
}

// describeValues wraps the values of typed flags so that a bad value says what is expected
// ("parse error" is all the flag package says), on the command line and in AUTHZ_* alike.
func describeValues(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		getter, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		var want string
		kind, _ := flag.UnquoteUsage(f)
		switch getter.Get().(type) {
		case bool:
			f.Value = boolValue{described{f.Value, "want true or false", ""}}
			return
		case time.Duration:
			want = "want a duration with a unit, such as 90s, 2m or 1h"
		case int, int64, uint, uint64:
			want = "want a whole number"
		case float64:
			want = "want a number"
		default:
			return
		}
		f.Value = described{f.Value, want, kind}
	})
}

type described struct {
	flag.Value
	want string
	kind string // the value's name in the help (UnquoteUsage knows only the flag package's types)
}

func (d described) Set(s string) error {
	if err := d.Value.Set(s); err != nil {
		return errors.New(d.want)
	}
	return nil
}

// boolValue keeps a bool flag usable without a value (--dev).
type boolValue struct{ described }

func (boolValue) IsBoolFlag() bool { return true }
