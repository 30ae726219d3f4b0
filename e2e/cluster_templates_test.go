package e2e

// The function templates (template/pronghorn-{pypy,node,jvm}) with their
// handler skeletons, built as cluster/images/build.sh builds them (what
// `faas-cli build --shrinkwrap` lays out, packed without Docker), deployed
// as faas-cli deploys a function of that template (envProcess from
// template.yml), through the same snapshot flow as TestClusterSnapshots:
// the skeletons count their calls, so a restored pod visibly goes on.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/openfaas/faas-provider/types"
	"sigs.k8s.io/yaml"
)

// templateFprocess reads a template's template.yml, as faas-cli does.
func templateFprocess(t *testing.T, lang string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "template", lang, "template.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Language string `json:"language"`
		FProcess string `json:"fprocess"`
	}
	if err := yaml.Unmarshal(raw, &tpl); err != nil || tpl.Language != lang || tpl.FProcess == "" {
		t.Fatalf("template/%s/template.yml: %+v (%v)", lang, tpl, err)
	}
	return tpl.FProcess
}

func TestClusterTemplates(t *testing.T) {
	c := requireDevCluster(t)
	namespace := c.testNamespace(t)
	m := startClusterMinIO(t)
	const bucket = "e2e-templates"
	p := startClusterProvider(t, c, m, namespace, bucket)
	for _, rt := range []string{"pypy", "node", "jvm"} {
		t.Run(rt, func(t *testing.T) {
			image := "template-" + rt
			if _, ok := c.imageRef(image); !ok {
				t.Skipf("no %s image (cluster/images/build.sh %s)", image, image)
			}
			ref := c.importImage(t, image)
			name := "tpl-" + rt
			parent := p.t
			p.t = t
			defer func() { p.t = parent }()
			t.Cleanup(func() {
				body, _ := json.Marshal(types.DeleteFunctionRequest{FunctionName: name, Namespace: namespace})
				req, _ := http.NewRequest("DELETE", p.url+"/system/functions", bytes.NewReader(body))
				req.SetBasicAuth(p.user, p.password)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			})
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("pods of %s:\n%s", name, clusterPodLogs(c, namespace, name))
				}
			})
			clusterCounter(t, c, m, p, p, namespace, bucket, name, ref, templateFprocess(t, "pronghorn-"+rt))
		})
	}
}
