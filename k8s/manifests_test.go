package k8s

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// There is no cluster, kubectl or helm here, so these tests check what can
// be checked offline: every manifest decodes as a typed object of the
// client-go scheme, the RBAC covers what the backend calls, and the helm
// chart renders (with the handful of helm functions it uses) to the same
// objects as yaml/.

type object struct {
	kind, namespace, name string
	obj                   runtime.Object
}

func (o object) key() string { return o.kind + " " + o.namespace + "/" + o.name }

func decodeAll(t *testing.T, source string, data []byte) []object {
	t.Helper()
	// The universal deserializer drops unknown fields silently; the strict
	// one catches a misspelt field that would otherwise be lost unnoticed.
	strict := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	var out []object
	for i, doc := range splitDocuments(data) {
		obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Errorf("%s, document %d: %v\n%s", source, i, err, doc)
			continue
		}
		if _, _, err := strict.Decode(doc, nil, nil); err != nil {
			t.Errorf("%s, document %d (%s): %v", source, i, gvk.Kind, err)
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			t.Errorf("%s, document %d: %v", source, i, err)
			continue
		}
		if m.GetName() == "" {
			t.Errorf("%s, document %d: %s without a name", source, i, gvk.Kind)
		}
		out = append(out, object{gvk.Kind, m.GetNamespace(), m.GetName(), obj})
	}
	return out
}

// splitDocuments splits a YAML stream on "---" lines and drops documents
// that hold only comments or white space.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range strings.Split("\n"+string(data), "\n---") {
		empty := true
		for _, line := range strings.Split(doc, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(doc))
		}
	}
	return docs
}

func manifestObjects(t *testing.T) map[string]object {
	t.Helper()
	files, err := filepath.Glob("../yaml/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in ../yaml: %v", err)
	}
	out := map[string]object{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("#")) {
			t.Errorf("%s does not start with a comment saying what it is", f)
		}
		for _, o := range decodeAll(t, f, data) {
			if _, dup := out[o.key()]; dup {
				t.Errorf("%s: %s defined twice", f, o.key())
			}
			out[o.key()] = o
		}
	}
	return out
}

func TestManifestsDecode(t *testing.T) {
	objs := manifestObjects(t)
	for _, want := range []string{
		"Namespace /openfaas", "Namespace /openfaas-fn", "ServiceAccount openfaas/pronghorn",
		"Role openfaas-fn/pronghorn-functions", "RoleBinding openfaas-fn/pronghorn-functions",
		"ClusterRole /pronghorn-namespaces", "ClusterRoleBinding /pronghorn-namespaces",
		"ClusterRole /pronghorn-tokenreviews", "ClusterRoleBinding /pronghorn-tokenreviews",
		"Deployment openfaas/pronghorn", "Service openfaas/pronghorn",
		"Secret openfaas/pronghorn-minio", "Deployment openfaas/minio", "Service openfaas/minio",
	} {
		if _, ok := objs[want]; !ok {
			t.Errorf("yaml/ has no %s", want)
		}
	}
	if ns, ok := objs["Namespace /openfaas-fn"]; ok && ns.obj.(*corev1.Namespace).Annotations[namespaceAnnotation] != "1" {
		t.Error("openfaas-fn is not annotated openfaas: \"1\"")
	}
	checkProvider(t, "yaml/", objs)
}

// checkProvider checks what the provider needs from its objects, wherever
// they come from.
func checkProvider(t *testing.T, source string, objs map[string]object) {
	t.Helper()
	dep, ok := objs["Deployment openfaas/pronghorn"]
	if !ok {
		t.Fatalf("%s: no provider deployment", source)
	}
	pod := dep.obj.(*appsv1.Deployment).Spec.Template.Spec
	if pod.ServiceAccountName != "pronghorn" {
		t.Errorf("%s: provider service account %q", source, pod.ServiceAccountName)
	}
	c := pod.Containers[0]
	if !slices.Equal(c.Args, []string{"provider", "--backend", "kubernetes"}) {
		t.Errorf("%s: provider args %v", source, c.Args)
	}
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	for _, name := range []string{"read_timeout", "write_timeout", "function_namespace", "basic_auth", "secret_mount_path", "agent_image"} {
		if !env[name] {
			t.Errorf("%s: provider has no %s env", source, name)
		}
	}

	role, ok := objs["Role openfaas-fn/pronghorn-functions"]
	if !ok {
		t.Fatalf("%s: no role in openfaas-fn", source)
	}
	// Every call the backend makes in a function namespace, and nothing
	// more (e2e/cluster_rbac_test.go shows each is needed on a cluster).
	need := map[string][]string{
		"apps/deployments": {"get", "list", "watch", "create", "update", "delete"},
		"/services":        {"get", "create", "update", "delete"},
		"/secrets":         {"get", "list", "create", "update", "delete"},
		"/pods":            {"get", "list", "watch", "delete"},
		"/pods/log":        {"get"},
	}
	granted := map[string][]string{}
	for _, r := range role.obj.(*rbacv1.Role).Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				granted[g+"/"+res] = append(granted[g+"/"+res], r.Verbs...)
			}
		}
	}
	for res, verbs := range need {
		for _, v := range verbs {
			if !slices.Contains(granted[res], v) {
				t.Errorf("%s: role does not grant %s on %s", source, v, res)
			}
		}
	}
	for res, verbs := range granted {
		for _, v := range verbs {
			if !slices.Contains(need[res], v) {
				t.Errorf("%s: role grants %s on %s, which the backend never does", source, v, res)
			}
		}
	}
	rb, ok := objs["RoleBinding openfaas-fn/pronghorn-functions"]
	if !ok || len(rb.obj.(*rbacv1.RoleBinding).Subjects) != 1 ||
		rb.obj.(*rbacv1.RoleBinding).Subjects[0].Name != "pronghorn" || rb.obj.(*rbacv1.RoleBinding).Subjects[0].Namespace != "openfaas" {
		t.Errorf("%s: role binding does not bind openfaas/pronghorn", source)
	}
}

// renderChart renders chart/pronghorn like `helm template -n openfaas`,
// with the subset of helm's functions the chart uses.
func renderChart(t *testing.T, overrides map[string]any) (map[string]object, error) {
	t.Helper()
	dir := "../chart/pronghorn"
	var chart struct {
		Name       string `json:"name"`
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, filepath.Join(dir, "Chart.yaml"), &chart)
	values := map[string]any{}
	readYAML(t, filepath.Join(dir, "values.yaml"), &values)
	merge(values, overrides)

	tpl := template.New("chart").Option("missingkey=zero")
	tpl.Funcs(template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var buf bytes.Buffer
			err := tpl.ExecuteTemplate(&buf, name, data)
			return buf.String(), err
		},
		"toYaml": func(v any) (string, error) {
			b, err := yaml.Marshal(v)
			return strings.TrimSuffix(string(b), "\n"), err
		},
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"quote": func(v any) string { return fmt.Sprintf("%q", fmt.Sprint(v)) },
		"default": func(def any, given ...any) any {
			if len(given) == 0 || given[0] == nil || reflect.ValueOf(given[0]).IsZero() {
				return def
			}
			return given[0]
		},
		"required": func(msg string, v any) (any, error) {
			if v == nil || reflect.ValueOf(v).IsZero() {
				return nil, fmt.Errorf("%s", msg)
			}
			return v, nil
		},
		"prepend": func(list []any, v any) []any { return append([]any{v}, list...) },
	})
	files, err := filepath.Glob(filepath.Join(dir, "templates", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tpl.New(filepath.Base(f)).Parse(string(data)); err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
	}
	ctx := map[string]any{
		"Values":  values,
		"Release": map[string]any{"Name": "pronghorn", "Namespace": "openfaas", "Service": "Helm"},
		"Chart":   map[string]any{"Name": chart.Name, "Version": chart.Version, "AppVersion": chart.AppVersion},
	}
	out := map[string]object{}
	for _, f := range files {
		name := filepath.Base(f)
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		var buf bytes.Buffer
		if err := tpl.ExecuteTemplate(&buf, name, ctx); err != nil {
			return nil, fmt.Errorf("render %s: %w", name, err)
		}
		rendered := strings.ReplaceAll(buf.String(), "<no value>", "")
		if os.Getenv("PRONGHORN_SHOW_CHART") != "" {
			t.Logf("%s:\n%s", name, rendered)
		}
		for _, o := range decodeAll(t, "chart "+name, []byte(rendered)) {
			out[o.key()] = o
		}
	}
	return out, nil
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func TestChartRendersTheManifests(t *testing.T) {
	manifests := manifestObjects(t)
	tests := []struct {
		name      string
		overrides map[string]any
		check     func(t *testing.T, objs map[string]object)
		wantErr   string
	}{
		{
			name:      "defaults",
			overrides: map[string]any{"minio": map[string]any{"secretKey": "s3cret"}, "createFunctionNamespace": true},
			check: func(t *testing.T, objs map[string]object) {
				checkProvider(t, "chart", objs)
				for key := range manifests {
					if key == "Namespace /openfaas" {
						continue // the release namespace, created by helm -n openfaas --create-namespace
					}
					if _, ok := objs[key]; !ok {
						t.Errorf("chart does not render %s, which yaml/ has", key)
					}
				}
				for key := range objs {
					if _, ok := manifests[key]; !ok {
						t.Errorf("chart renders %s, which yaml/ does not have", key)
					}
				}
				img := objs["Deployment openfaas/pronghorn"].obj.(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Image
				if img != "ghcr.io/pronghorn-openfaas/pronghorn:0.1.0" {
					t.Errorf("image = %s", img)
				}
			},
		},
		{name: "minio secret key required", wantErr: "minio.secretKey is required"},
		{
			name:      "external store needs an endpoint",
			overrides: map[string]any{"minio": map[string]any{"enabled": false, "createCredentials": false}},
			wantErr:   "minio.endpoint is required",
		},
		{
			name: "external store, extra namespace, no auth",
			overrides: map[string]any{
				"minio":                   map[string]any{"enabled": false, "endpoint": "s3.example:9000", "createCredentials": false},
				"basicAuth":               map[string]any{"enabled": false},
				"extraFunctionNamespaces": []any{"team-a"},
				"clusterRole":             false,
				"image":                   map[string]any{"tag": "dev"},
			},
			check: func(t *testing.T, objs map[string]object) {
				for _, gone := range []string{"Deployment openfaas/minio", "Secret openfaas/pronghorn-minio", "ClusterRole /pronghorn-namespaces", "Namespace /openfaas-fn"} {
					if _, ok := objs[gone]; ok {
						t.Errorf("%s rendered", gone)
					}
				}
				// Snapshot plans need TokenReviews whether or not
				// namespaces are listed.
				if _, ok := objs["ClusterRoleBinding /pronghorn-tokenreviews"]; !ok {
					t.Error("no TokenReview permission without clusterRole")
				}
				if _, ok := objs["Role team-a/pronghorn-functions"]; !ok {
					t.Error("no role in the extra namespace")
				}
				pod := objs["Deployment openfaas/pronghorn"].obj.(*appsv1.Deployment).Spec.Template.Spec
				if len(pod.Volumes) != 2 || pod.Containers[0].Image != "ghcr.io/pronghorn-openfaas/pronghorn:dev" {
					t.Errorf("volumes %v image %s", pod.Volumes, pod.Containers[0].Image)
				}
				for _, e := range pod.Containers[0].Env {
					if e.Name == "minio_endpoint" && e.Value != "s3.example:9000" {
						t.Errorf("minio_endpoint = %s", e.Value)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := renderChart(t, tt.overrides)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, objs)
		})
	}
}

// TestUpstreamManifestDecodes: chart/upstream/pronghorn.yaml, the one
// manifest added to the upstream openfaas chart, decodes strictly and
// grants the chart's ServiceAccount exactly what its own Role lacks.
func TestUpstreamManifestDecodes(t *testing.T) {
	data, err := os.ReadFile("../chart/upstream/pronghorn.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]object{}
	for _, o := range decodeAll(t, "chart/upstream/pronghorn.yaml", data) {
		objs[o.key()] = o
	}
	for _, want := range []string{
		"ConfigMap openfaas/pronghorn-config", "Service openfaas/pronghorn-provider",
		"Role openfaas/pronghorn-provider", "RoleBinding openfaas/pronghorn-provider",
		"Role openfaas-fn/pronghorn-evict", "RoleBinding openfaas-fn/pronghorn-evict",
		"ClusterRole /pronghorn-openfaas-tokenreviews", "ClusterRoleBinding /pronghorn-openfaas-tokenreviews",
	} {
		if _, ok := objs[want]; !ok {
			t.Errorf("no %s", want)
		}
	}
	for key, o := range objs {
		var subjects []rbacv1.Subject
		switch b := o.obj.(type) {
		case *rbacv1.RoleBinding:
			subjects = b.Subjects
		case *rbacv1.ClusterRoleBinding:
			subjects = b.Subjects
		default:
			continue
		}
		if len(subjects) != 1 || subjects[0].Name != "openfaas-controller" || subjects[0].Namespace != "openfaas" {
			t.Errorf("%s binds %+v, want the chart's openfaas/openfaas-controller", key, subjects)
		}
	}
	cm := objs["ConfigMap openfaas/pronghorn-config"].obj.(*corev1.ConfigMap)
	if cm.Data["snapshot_store"] != "minio" || cm.Data["data_dir"] != "/tmp/pronghorn" {
		t.Errorf("settings %v", cm.Data)
	}
}
