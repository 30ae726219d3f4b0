package e2e

// RBAC, enforced: the provider binary runs with a token of chart/pronghorn's
// ServiceAccount (kubectl create token), bound by the chart's own Role and
// ClusterRoles, and every handler has its effect on Deployments, Services,
// Secrets and Pods. Then the same provider meets what it may not do: an
// annotated namespace without its Role, and a Role short of one verb at a
// time. Each such call fails with a clean 4xx that keeps the API server's
// "forbidden" reason and leaves nothing half-made, and the provider goes
// on serving.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The chart's ServiceAccount and Role (chart/pronghorn/templates/rbac.yaml).
const (
	chartServiceAccount = "pronghorn"
	chartRole           = "pronghorn-functions"
)

// serviceAccountKubeconfig writes a kubeconfig that authenticates as
// namespace/sa with a token from `kubectl create token`.
func (c *devCluster) serviceAccountKubeconfig(t *testing.T, namespace, sa string) string {
	t.Helper()
	token := strings.TrimSpace(c.kubectl(t, nil, "-n", namespace, "create", "token", sa, "--duration", "1h"))
	admin, err := clientcmd.LoadFromFile(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cluster := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster]
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["dev"] = cluster
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["dev"] = &clientcmdapi.Context{Cluster: "dev", AuthInfo: sa}
	cfg.CurrentContext = "dev"
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// canI asks the API server whether the chart's ServiceAccount may do verb on
// resource in namespace (kubectl auth can-i --as).
func (c *devCluster) canI(t *testing.T, namespace, verb, resource string) bool {
	t.Helper()
	out, _ := c.kubectlErr(t, nil, "auth", "can-i", verb, resource, "-n", namespace,
		"--as", "system:serviceaccount:"+upstreamNamespace+":"+chartServiceAccount)
	return strings.TrimSpace(out) == "yes"
}

func TestClusterRBAC(t *testing.T) {
	c := requireDevCluster(t)
	helm := requireHelm(t)
	image := c.importImage(t, "counter-pypy")
	c.fixedNamespace(t, upstreamNamespace, nil)
	c.fixedNamespace(t, upstreamFunctions, map[string]string{"openfaas": "1"})

	// The chart's RBAC objects, exactly as helm renders them.
	rbac := c.helm(t, helm, "template", "pronghorn", filepath.Join(repoRoot(t), "chart", "pronghorn"), "-n", upstreamNamespace,
		"--show-only", "templates/rbac.yaml", "--set", "minio.secretKey=unused")
	c.kubectl(t, []byte(rbac), "apply", "-f", "-")
	t.Cleanup(func() { _, _ = c.kubectlErr(t, []byte(rbac), "delete", "--ignore-not-found", "-f", "-") })
	kubeconfig := c.serviceAccountKubeconfig(t, upstreamNamespace, chartServiceAccount)
	// The token really is the ServiceAccount's: it may not read Secrets in
	// its own namespace, where the chart grants it nothing.
	if c.canI(t, upstreamNamespace, "list", "secrets") {
		t.Fatal("the chart's ServiceAccount may list secrets in openfaas: the RBAC under test is not the chart's")
	}

	m := startClusterMinIO(t)
	const bucket = "e2e-rbac"
	p := startClusterProviderAs(t, c, m, upstreamFunctions, bucket, kubeconfig, "--cluster-role=true")
	fns := c.client.AppsV1().Deployments(upstreamFunctions)
	svcs := c.client.CoreV1().Services(upstreamFunctions)
	secrets := c.client.CoreV1().Secrets(upstreamFunctions)
	const name = "rbac-counter"
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pods of %s:\n%s", name, clusterPodLogs(c, upstreamFunctions, name))
		}
	})

	// Secrets: create, list, update; the value never comes back.
	p.must(http.StatusAccepted, "POST", "/system/secrets", types.Secret{Name: "rbac-s", Value: "one"})
	if s, err := secrets.Get(t.Context(), "rbac-s", metav1.GetOptions{}); err != nil || string(s.Data["rbac-s"]) != "one" {
		t.Fatalf("secret after create: %v %v", s, err)
	}
	var listed []types.Secret
	if err := json.Unmarshal([]byte(p.must(http.StatusOK, "GET", "/system/secrets", nil)), &listed); err != nil ||
		!slices.ContainsFunc(listed, func(s types.Secret) bool { return s.Name == "rbac-s" && s.Value == "" }) {
		t.Errorf("secrets listed: %+v (%v)", listed, err)
	}
	p.must(http.StatusAccepted, "PUT", "/system/secrets", types.Secret{Name: "rbac-s", Value: "two"})
	if s, _ := secrets.Get(t.Context(), "rbac-s", metav1.GetOptions{}); string(s.Data["rbac-s"]) != "two" {
		t.Errorf("secret after update: %q", s.Data["rbac-s"])
	}

	// Deploy with that secret, fixed strategy: a checkpoint after call 1
	// (TokenReview, presigned upload) and eviction after call 2 (pods
	// delete), so the replacement restores.
	p.must(http.StatusAccepted, "POST", "/system/functions", types.FunctionDeployment{
		Service: name, Image: image, Namespace: upstreamFunctions, Secrets: []string{"rbac-s"},
		Annotations: &map[string]string{"com.pronghorn.agent": "true",
			"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "1", "com.pronghorn.evict-after": "2"},
	})
	dep, err := fns.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("deployment after deploy: %v", err)
	}
	if _, err := svcs.Get(t.Context(), name, metav1.GetOptions{}); err != nil {
		t.Fatalf("service after deploy: %v", err)
	}
	// As faas-netes mounts them: one projected volume of the function's secrets.
	if !slices.ContainsFunc(dep.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool {
			return p.Secret != nil && p.Secret.Name == "rbac-s"
		})
	}) {
		t.Errorf("the deployment does not mount secret rbac-s: %+v", dep.Spec.Template.Spec.Volumes)
	}
	var list []types.FunctionStatus
	if err := json.Unmarshal([]byte(p.must(http.StatusOK, "GET", "/system/functions", nil)), &list); err != nil || len(list) != 1 || list[0].Name != name {
		t.Errorf("functions listed: %+v (%v)", list, err)
	}
	if st := p.status(name); st.Image != image {
		t.Errorf("status: %+v", st)
	}

	// Invoke (pods list/watch), checkpoint (pods get, TokenReview), evict
	// (pods delete), restore.
	first := clusterWaitPodReady(t, c, upstreamFunctions, name, "")
	if r := clusterInvoke(t, p, name); r.Count != 1 {
		t.Fatalf("call 1 counted %d", r.Count)
	}
	clusterWait(t, time.Minute, "the snapshot of call 1", func() bool { return len(clusterSnapshotsOf(t, m, bucket, name, 1)) > 0 })
	if r := clusterInvoke(t, p, name); r.Count != 2 {
		t.Fatalf("call 2 counted %d", r.Count)
	}
	clusterWait(t, time.Minute, "the eviction of "+first.Name, func() bool {
		pod, err := c.client.CoreV1().Pods(upstreamFunctions).Get(t.Context(), first.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && pod.DeletionTimestamp != nil)
	})
	second := clusterWaitPodReady(t, c, upstreamFunctions, name, first.UID)
	if r := clusterInvoke(t, p, name); r.Count != 2 {
		t.Errorf("call 3, on the pod restored from the request-1 snapshot, counted %d, want 2", r.Count)
	}
	if st := clusterAgentStatus(t, second); !st.Restored {
		t.Errorf("the replacement pod was not restored: %+v", st)
	}

	// Logs (pods/log get).
	if code, body := p.do("GET", "/system/logs?name="+name+"&namespace="+upstreamFunctions+"&tail=5&follow=false", nil); code != http.StatusOK || !strings.Contains(body, "function ready") {
		t.Errorf("logs = %d %q", code, body)
	}

	// Update (deployments get+update, services get+update): a new label,
	// an annotation gone, a new uid on the pod template.
	oldUID := dep.Spec.Template.Labels["uid"]
	p.must(http.StatusAccepted, "PUT", "/system/functions", types.FunctionDeployment{
		Service: name, Image: image, Namespace: upstreamFunctions, Secrets: []string{"rbac-s"},
		Labels:      &map[string]string{"team": "rbac"},
		Annotations: &map[string]string{"com.pronghorn.agent": "true", "com.pronghorn.strategy": "cold"},
	})
	dep, _ = fns.Get(t.Context(), name, metav1.GetOptions{})
	svc, _ := svcs.Get(t.Context(), name, metav1.GetOptions{})
	if dep.Spec.Template.Labels["team"] != "rbac" || dep.Spec.Template.Labels["uid"] == oldUID ||
		dep.Spec.Template.Annotations["com.pronghorn.evict-after"] != "" || svc.Annotations["com.pronghorn.strategy"] != "cold" {
		t.Errorf("after update: pod labels %v, annotations %v; service annotations %v",
			dep.Spec.Template.Labels, dep.Spec.Template.Annotations, svc.Annotations)
	}

	// Scale to zero and back from zero by an invocation (get + update).
	p.must(http.StatusAccepted, "POST", "/system/scale-function/"+name, types.ScaleServiceRequest{ServiceName: name, Replicas: 0})
	if dep, _ := fns.Get(t.Context(), name, metav1.GetOptions{}); *dep.Spec.Replicas != 0 {
		t.Fatalf("replicas after scale to 0: %d", *dep.Spec.Replicas)
	}
	clusterWait(t, time.Minute, "no pods of "+name, func() bool { return len(clusterPods(t, c, upstreamFunctions, name)) == 0 })
	if r := clusterInvoke(t, p, name); r.Count != 1 {
		t.Errorf("the call from zero counted %d, want 1 (cold)", r.Count)
	}
	if dep, _ := fns.Get(t.Context(), name, metav1.GetOptions{}); *dep.Spec.Replicas != 1 {
		t.Errorf("replicas after scale from zero: %d", *dep.Spec.Replicas)
	}

	// Namespaces (namespaces list, deployments list as the probe of RBAC):
	// an annotated namespace without the Role is not offered, and
	// requests there are a clean 404 that names the reason.
	noRBAC := c.testNamespace(t)
	var nss []string
	if err := json.Unmarshal([]byte(p.must(http.StatusOK, "GET", "/system/namespaces", nil)), &nss); err != nil ||
		!slices.Equal(nss, []string{upstreamFunctions}) {
		t.Errorf("namespaces %v (%v), want only %s: %s has no Role", nss, err, upstreamFunctions, noRBAC)
	}
	for _, call := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/system/functions", types.FunctionDeployment{Service: "x", Image: image, Namespace: noRBAC}},
		{"GET", "/system/functions?namespace=" + noRBAC, nil},
		{"GET", "/system/function/x?namespace=" + noRBAC, nil},
		{"POST", "/system/secrets", types.Secret{Name: "x", Value: "v", Namespace: noRBAC}},
		{"POST", "/function/x." + noRBAC, "hi"},
	} {
		code, body := p.do(call.method, call.path, call.body)
		if code != http.StatusNotFound || (call.path != "/function/x."+noRBAC && !strings.Contains(body, "forbidden")) {
			t.Errorf("%s %s in a namespace without RBAC = %d %q, want 404 naming the API's forbidden", call.method, call.path, code, body)
		}
	}

	// A Role short of one verb at a time: the call that needs it fails
	// cleanly and leaves nothing behind.
	for _, tc := range []struct {
		resource, verb string
		call           func() (int, string)
		after          func(t *testing.T)
	}{
		{"deployments", "create", func() (int, string) {
			return p.do("POST", "/system/functions", types.FunctionDeployment{Service: "rbac-new", Image: image, Namespace: upstreamFunctions})
		}, func(t *testing.T) { c.requireGone(t, upstreamFunctions, "rbac-new") }},
		{"services", "create", func() (int, string) {
			return p.do("POST", "/system/functions", types.FunctionDeployment{Service: "rbac-new", Image: image, Namespace: upstreamFunctions})
		}, func(t *testing.T) { c.requireGone(t, upstreamFunctions, "rbac-new") }},
		{"deployments", "update", func() (int, string) {
			return p.do("POST", "/system/scale-function/"+name, types.ScaleServiceRequest{ServiceName: name, Replicas: 2})
		}, func(t *testing.T) {
			if dep, _ := fns.Get(t.Context(), name, metav1.GetOptions{}); *dep.Spec.Replicas != 1 {
				t.Errorf("replicas %d after a refused scale", *dep.Spec.Replicas)
			}
		}},
		{"deployments", "delete", func() (int, string) {
			return p.do("DELETE", "/system/functions", types.DeleteFunctionRequest{FunctionName: name, Namespace: upstreamFunctions})
		}, func(t *testing.T) {
			if _, err := svcs.Get(t.Context(), name, metav1.GetOptions{}); err != nil {
				t.Errorf("the service went although its deployment could not: %v", err)
			}
		}},
		{"secrets", "create", func() (int, string) {
			return p.do("POST", "/system/secrets", types.Secret{Name: "rbac-t", Value: "v"})
		}, func(t *testing.T) {
			if _, err := secrets.Get(t.Context(), "rbac-t", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("secret rbac-t after a refused create: %v", err)
			}
		}},
	} {
		t.Run(fmt.Sprintf("without %s %s", tc.verb, tc.resource), func(t *testing.T) {
			c.withoutVerb(t, upstreamFunctions, tc.resource, tc.verb)
			code, body := tc.call()
			if code < 400 || code >= 500 || !strings.Contains(body, "forbidden") {
				t.Errorf("= %d %q, want a 4xx naming the API's forbidden", code, body)
			}
			tc.after(t)
		})
	}
	// Everything granted again, the provider carries on.
	if r := clusterInvoke(t, p, name); r.Count != 2 {
		t.Errorf("call after the RBAC cases counted %d, want 2", r.Count)
	}

	// Delete the function (deployments delete, services delete) and the
	// secret.
	p.must(http.StatusAccepted, "DELETE", "/system/functions", types.DeleteFunctionRequest{FunctionName: name, Namespace: upstreamFunctions})
	c.requireGone(t, upstreamFunctions, name)
	p.must(http.StatusAccepted, "DELETE", "/system/secrets", types.Secret{Name: "rbac-s"})
	if _, err := secrets.Get(t.Context(), "rbac-s", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secret after delete: %v", err)
	}
}

// requireGone checks that function name has no Deployment (or one being
// deleted) and no Service.
func (c *devCluster) requireGone(t *testing.T, namespace, name string) {
	t.Helper()
	clusterWait(t, time.Minute, "function "+name+" gone", func() bool {
		d, err := c.client.AppsV1().Deployments(namespace).Get(t.Context(), name, metav1.GetOptions{})
		_, serr := c.client.CoreV1().Services(namespace).Get(t.Context(), name, metav1.GetOptions{})
		return (apierrors.IsNotFound(err) || (err == nil && d.DeletionTimestamp != nil)) && apierrors.IsNotFound(serr)
	})
}

// withoutVerb takes verb on resource out of the chart's Role in namespace
// until the test ends, and waits until the API server enforces it.
func (c *devCluster) withoutVerb(t *testing.T, namespace, resource, verb string) {
	t.Helper()
	roles := c.client.RbacV1().Roles(namespace)
	orig, err := roles.Get(t.Context(), chartRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cut := orig.DeepCopy()
	found := false
	for i, r := range cut.Rules {
		if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			cut.Rules[i].Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == verb })
			found = true
		}
	}
	if !found {
		t.Fatalf("the chart's Role does not grant %s %s", verb, resource)
	}
	if _, err := roles.Update(t.Context(), cut, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background() // the test's own is over by now
		cur, err := roles.Get(ctx, chartRole, metav1.GetOptions{})
		if err == nil {
			cur.Rules = orig.Rules
			_, err = roles.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("restore the Role: %v", err)
			return
		}
		clusterWait(t, 30*time.Second, "the Role restored", func() bool { return c.canI(t, namespace, verb, resource) })
	})
	clusterWait(t, 30*time.Second, "the API server to enforce the cut Role", func() bool { return !c.canI(t, namespace, verb, resource) })
}
