// Package policy holds the demo API's route policy (demo.yaml), which the compose stack mounts
// and `authz --dev` and the local dev stack load.
package policy

import _ "embed"

// Demo is demo.yaml.
//
//go:embed demo.yaml
var Demo []byte
