package helm

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// crdSchemas validate custom resources as the API server does: the CRD's OpenAPI schema with
// its defaults applied, then its CEL rules (x-kubernetes-validations), which the Go types alone
// do not enforce. The CRDs are the ones the API modules ship, at the versions go.mod pins.
type crdSchemas map[string]*apiextensions.JSONSchemaProps // "group/version Kind" → schema

// loadCRDs reads CRD files from the module cache copy of a module (go list finds it).
func loadCRDs(t *testing.T, into crdSchemas, module string, files ...string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	require.NoError(t, err, "go list -m %s", module)
	dir := strings.TrimSpace(string(out))
	for _, f := range files {
		var crd apiextensionsv1.CustomResourceDefinition
		require.NoError(t, yaml.Unmarshal(readFile(t, filepath.Join(dir, f)), &crd), f)
		for _, v := range crd.Spec.Versions {
			var internal apiextensions.JSONSchemaProps
			require.NoError(t, apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil))
			into[crd.Spec.Group+"/"+v.Name+" "+crd.Spec.Names.Kind] = &internal
		}
	}
}

// validate checks one object (its YAML document) against its CRD; it fails the test when no
// CRD was loaded for the object's apiVersion and kind.
func (c crdSchemas) validate(t *testing.T, doc []byte) field.ErrorList {
	t.Helper()
	js, err := yaml.YAMLToJSON(doc)
	require.NoError(t, err)
	var obj map[string]any
	// As the API server decodes: whole numbers become int64, which the CEL rules expect.
	require.NoError(t, utiljson.Unmarshal(js, &obj))
	gvk := obj["apiVersion"].(string) + " " + obj["kind"].(string)
	schema, ok := c[gvk]
	require.True(t, ok, "no CRD for %s", gvk)

	structural, err := structuralschema.NewStructural(schema)
	require.NoError(t, err)
	defaulting.Default(obj, structural)
	validator, _, err := apiservervalidation.NewSchemaValidator(schema)
	require.NoError(t, err)
	errs := apiservervalidation.ValidateCustomResource(nil, obj, validator)
	celErrs, _ := cel.NewValidator(structural, true, celconfig.PerCallLimit).
		Validate(context.Background(), nil, structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}
