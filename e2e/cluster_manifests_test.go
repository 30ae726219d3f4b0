package e2e

// Every manifest we ship, checked by a real API server: chart/pronghorn
// rendered by helm (several value sets), yaml/, and the upstream openfaas
// chart rendered with chart/upstream/values.yaml plus
// chart/upstream/pronghorn.yaml. `kubectl apply --dry-run=server` runs
// each object through the API server's defaulting, validation and
// admission without storing it; every rendered document must come back
// "(server dry run)".

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClusterManifestsDryRun(t *testing.T) {
	c := requireDevCluster(t)
	helm := requireHelm(t)
	// Namespaced objects are checked against their namespace, which a dry
	// run does not create.
	c.fixedNamespace(t, upstreamNamespace, nil)
	c.fixedNamespace(t, upstreamFunctions, map[string]string{"openfaas": "1"})
	root := repoRoot(t)
	ours := filepath.Join(root, "chart", "pronghorn")

	type source struct {
		name   string
		render func(t *testing.T) string // the YAML stream
	}
	template := func(args ...string) func(t *testing.T) string {
		return func(t *testing.T) string { return c.helm(t, helm, append([]string{"template"}, args...)...) }
	}
	file := func(paths ...string) func(t *testing.T) string {
		return func(t *testing.T) string {
			var b strings.Builder
			for _, p := range paths {
				b.WriteString("\n---\n")
				b.WriteString(readFile(t, p))
			}
			return b.String()
		}
	}
	yamls, err := filepath.Glob(filepath.Join(root, "yaml", "*.yaml"))
	if err != nil || len(yamls) == 0 {
		t.Fatalf("no yaml/*.yaml: %v", err)
	}
	sources := []source{
		{"chart/pronghorn defaults", template("pronghorn", ours, "-n", upstreamNamespace,
			"--set", "minio.secretKey=dry-run", "--set", "createFunctionNamespace=true")},
		{"chart/pronghorn external store, no cluster role, no auth, persistence", template("pronghorn", ours, "-n", upstreamNamespace,
			"--set", "minio.enabled=false", "--set", "minio.endpoint=s3.example:9000", "--set", "minio.createCredentials=false",
			"--set", "clusterRole=false", "--set", "basicAuth.enabled=false")},
		{"chart/pronghorn bundled MinIO on a PVC", template("pronghorn", ours, "-n", upstreamNamespace,
			"--set", "minio.secretKey=dry-run", "--set", "minio.persistence.enabled=true")},
		{"yaml/", file(yamls...)},
	}
	if up, ok := upstreamChartDir(); ok {
		sources = append(sources, source{"upstream openfaas chart with chart/upstream/", func(t *testing.T) string {
			return template(upstreamRelease, up, "-n", upstreamNamespace, "--include-crds",
				"-f", filepath.Join(root, "chart", "upstream", "values.yaml"),
				"--set", "faasnetes.image=pronghorn.local/pronghorn:dry-run")(t) +
				"\n---\n" + readFile(t, filepath.Join(root, "chart", "upstream", "pronghorn.yaml"))
		}})
	} else {
		t.Log("the upstream openfaas chart is not prepared (cluster/openfaas.sh): its manifests are not checked")
	}
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			stream := s.render(t)
			docs := renderDocuments(stream)
			if len(docs) == 0 {
				t.Fatal("rendered nothing")
			}
			out, warnings := c.kubectlSplit(t, []byte(stream), "apply", "--dry-run=server", "-f", "-")
			if warnings != "" {
				t.Logf("kubectl's warnings:\n%s", warnings)
			}
			var ok int
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.HasSuffix(line, "(server dry run)") {
					ok++
				} else {
					t.Errorf("kubectl: %s", line)
				}
			}
			if ok != len(docs) {
				t.Errorf("%d of %d objects passed the server's dry run:\n%s", ok, len(docs), out)
			}
			t.Logf("%d objects pass the server's dry run", ok)
		})
	}
}

// upstreamChartDir is the prepared upstream chart, if there is one.
func upstreamChartDir() (string, bool) {
	dir := defaultUpstream
	if d := os.Getenv("PRONGHORN_UPSTREAM_DIR"); d != "" {
		dir = d
	}
	p := filepath.Join(dir, "chart", "openfaas")
	_, err := os.Stat(filepath.Join(p, "Chart.yaml"))
	return p, err == nil
}
