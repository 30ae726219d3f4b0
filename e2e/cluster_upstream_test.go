package e2e

// The drop-in path: the UPSTREAM openfaas chart, installed with helm as it
// is, with our image in place of faas-netes (--set faasnetes.image), plus
// chart/upstream/values.yaml and chart/upstream/pronghorn.yaml. The
// provider then runs inside the chart's gateway pod as `./faas-netes`, with
// only faas-netes' environment, and takes its own settings from the
// pronghorn-config ConfigMap and pronghorn-store Secret. The same snapshot
// flow as TestClusterSnapshots runs through the chart's real gateway.
//
// The chart and the gateway image come from cluster/openfaas.sh (pinned,
// cached in /opt/pronghorn/upstream); without the chart the test skips,
// saying why.

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// The names chart/upstream/pronghorn.yaml is written for.
	upstreamRelease   = "openfaas"
	upstreamNamespace = "openfaas"
	upstreamFunctions = "openfaas-fn"
	defaultUpstream   = "/opt/pronghorn/upstream"
)

// upstreamChart is the pinned openfaas chart and gateway image that
// cluster/openfaas.sh prepared.
type upstreamChart struct {
	chartDir   string
	gatewayTar string // "" when the gateway could not be built
	gatewayRef string
}

func requireUpstreamChart(t *testing.T) upstreamChart {
	t.Helper()
	chartDir, ok := upstreamChartDir()
	dir := filepath.Dir(filepath.Dir(chartDir))
	u := upstreamChart{chartDir: chartDir}
	if !ok {
		t.Skipf("the upstream openfaas chart is not prepared: no %s (cluster/openfaas.sh; the Go module proxy here refuses faas-netes, so it needs FAAS_NETES_SRC once)", u.chartDir)
	}
	if ref, err := os.ReadFile(filepath.Join(dir, "gateway.ref")); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "gateway.tar")); err == nil {
			u.gatewayTar, u.gatewayRef = filepath.Join(dir, "gateway.tar"), strings.TrimSpace(string(ref))
		}
	}
	return u
}

// importTar imports an image archive into the cluster's containerd unless
// ref is there already.
func (c *devCluster) importTar(t *testing.T, tarball, ref string) {
	t.Helper()
	if out, _ := c.ctrOutput(t, "images", "ls", "-q"); strings.Contains("\n"+out, "\n"+ref+"\n") {
		return
	}
	if out, err := c.ctrOutput(t, "images", "import", tarball); err != nil {
		t.Fatalf("ctr images import %s: %v\n%s", tarball, err, out)
	}
}

// upstreamValues are the --set flags the dev cluster needs on top of
// chart/upstream/values.yaml: local images that are never pulled, no NATS,
// queue-worker, Prometheus or AlertManager (their images cannot be had
// here), and the fastest probes the kubelet allows, so pod start times show
// the function's start rather than the probe schedule.
func upstreamValues(agentImage, gatewayImage string) []string {
	set := []string{
		"faasnetes.image=" + agentImage,
		"openfaasImagePullPolicy=Never",
		"functions.imagePullPolicy=Never",
		"async=false",
		"prometheus.create=false",
		"alertmanager.create=false",
		"functions.readinessProbe.periodSeconds=1",
	}
	if gatewayImage != "" {
		set = append(set, "gateway.image="+gatewayImage)
	}
	var args []string
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return args
}

func TestClusterUpstreamChart(t *testing.T) {
	c := requireDevCluster(t)
	helm := requireHelm(t)
	up := requireUpstreamChart(t)
	agentImage := c.importImage(t, "pronghorn")
	if up.gatewayTar != "" {
		c.importTar(t, up.gatewayTar, up.gatewayRef)
	} else {
		t.Log("no gateway image (cluster/openfaas.sh could not build one): calls go straight to the provider in the gateway pod")
	}
	for _, img := range []string{"counter-pypy", "counter-jvm"} {
		if _, ok := c.imageRef(img); ok {
			c.importImage(t, img)
		}
	}
	m := startClusterMinIO(t)
	const bucket = "e2e-upstream"

	// Namespaces first (the chart creates none), then what pronghorn.yaml
	// expects: the store's Secret (credentials, and this cluster's MinIO
	// endpoint, which wins over the ConfigMap's), then the manifest itself.
	c.fixedNamespace(t, upstreamNamespace, nil)
	c.fixedNamespace(t, upstreamFunctions, map[string]string{"openfaas": "1"})
	_, err := c.client.CoreV1().Secrets(upstreamNamespace).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pronghorn-store", Namespace: upstreamNamespace},
		StringData: map[string]string{
			"minio_access_key": m.accessKey, "minio_secret_key": m.secretKey,
			"minio_endpoint": m.endpoint, "minio_bucket": bucket,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(repoRoot(t), "chart", "upstream", "pronghorn.yaml")
	c.kubectl(t, nil, "apply", "-f", extra)
	t.Cleanup(func() { _, _ = c.kubectlErr(t, nil, "delete", "--ignore-not-found", "-f", extra) })
	// This cluster has no DNS, so the Service name in provider_url does not
	// resolve in pods: without it the provider gives pods its pod IP.
	c.kubectl(t, nil, "-n", upstreamNamespace, "patch", "configmap", "pronghorn-config", "--type", "json",
		"-p", `[{"op":"remove","path":"/data/provider_url"}]`)

	// The chart's CRDs outlive `helm uninstall` (crds/ and a keep policy);
	// remove those this test brought.
	crdsBefore := c.openfaasCRDs(t)
	t.Cleanup(func() {
		for _, crd := range c.openfaasCRDs(t) {
			if !slices.Contains(crdsBefore, crd) {
				if out, err := c.kubectlErr(t, nil, "delete", "crd", crd, "--ignore-not-found"); err != nil {
					t.Errorf("delete crd %s: %v\n%s", crd, err, out)
				}
			}
		}
	})
	start := time.Now()
	args := append([]string{"upgrade", "--install", upstreamRelease, up.chartDir, "-n", upstreamNamespace,
		"-f", filepath.Join(repoRoot(t), "chart", "upstream", "values.yaml")}, upstreamValues(agentImage, up.gatewayRef)...)
	c.helm(t, helm, args...)
	installed := time.Since(start)
	t.Cleanup(func() {
		c.helm(t, helm, "uninstall", upstreamRelease, "-n", upstreamNamespace, "--wait", "--timeout", "2m")
	})

	// The gateway pod: its faas-netes container is our provider.
	var pod corev1.Pod
	clusterWait(t, 2*time.Minute, "the gateway pod's provider container ready", func() bool {
		list, err := c.client.CoreV1().Pods(upstreamNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app=gateway"})
		if err != nil || len(list.Items) != 1 || list.Items[0].Status.PodIP == "" {
			return false
		}
		pod = list.Items[0]
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == "faas-netes" {
				return cs.Ready
			}
		}
		return false
	})
	providerReady := time.Since(start)
	t.Cleanup(func() {
		if t.Failed() {
			raw, _ := c.client.CoreV1().Pods(upstreamNamespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "faas-netes"}).DoRaw(context.Background())
			t.Logf("provider (faas-netes container) log:\n%s", raw)
		}
	})
	user, password := upstreamCredentials(t, c)
	direct := &provider{t: t, url: "http://" + net.JoinHostPort(pod.Status.PodIP, "8081"), logs: &syncBuffer{}, user: user, password: password}
	api := direct
	if up.gatewayRef != "" {
		api = &provider{t: t, url: "http://" + net.JoinHostPort(pod.Status.PodIP, "8080"), logs: &syncBuffer{}, user: user, password: password}
		clusterWait(t, time.Minute, "the gateway ready", func() bool {
			resp, err := http.Get(api.url + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	t.Logf("helm upgrade --install: %s; provider ready %s after it began; gateway %s", installed.Round(time.Millisecond),
		providerReady.Round(time.Millisecond), map[bool]string{true: up.gatewayRef, false: "none"}[up.gatewayRef != ""])

	// What the provider made of the chart's environment and our ConfigMap.
	raw, err := c.client.CoreV1().Pods(upstreamNamespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "faas-netes"}).DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"backend=kubernetes", "port=8081", "function_namespace=openfaas-fn", "snapshot_store=minio",
		"agent_image=" + agentImage, "settings from the cluster"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("provider log lacks %q:\n%s", want, raw)
		}
	}

	for _, fn := range []string{"counter-pypy", "counter-jvm"} {
		t.Run(fn, func(t *testing.T) {
			ref, ok := c.imageRef(fn)
			if !ok {
				t.Skipf("no %s image (cluster/images/build.sh %s)", fn, fn)
			}
			api.t, direct.t = t, t
			t.Cleanup(func() {
				code, body := direct.do("DELETE", "/system/functions", map[string]string{"functionName": fn, "namespace": upstreamFunctions})
				if code != http.StatusAccepted && code != http.StatusOK && code != http.StatusNotFound {
					t.Errorf("delete %s = %d %s", fn, code, body)
				}
			})
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("pods of %s:\n%s", fn, clusterPodLogs(c, upstreamFunctions, fn))
				}
			})
			clusterCounter(t, c, m, api, direct, upstreamFunctions, bucket, fn, ref, "")
		})
	}
	api.t, direct.t = t, t
}

// openfaasCRDs lists the CustomResourceDefinitions of openfaas.com groups.
func (c *devCluster) openfaasCRDs(t *testing.T) []string {
	t.Helper()
	out, err := c.kubectlErr(t, nil, "get", "crd", "-o", "name")
	if err != nil {
		t.Fatalf("kubectl get crd: %v\n%s", err, out)
	}
	var crds []string
	for _, l := range strings.Fields(out) {
		if name := strings.TrimPrefix(l, "customresourcedefinition.apiextensions.k8s.io/"); strings.HasSuffix(name, "openfaas.com") {
			crds = append(crds, name)
		}
	}
	return crds
}

// upstreamCredentials reads the gateway's basic-auth Secret, which the chart
// generated.
func upstreamCredentials(t *testing.T, c *devCluster) (string, string) {
	t.Helper()
	s, err := c.client.CoreV1().Secrets(upstreamNamespace).Get(t.Context(), "basic-auth", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's basic-auth Secret: %v", err)
	}
	return string(s.Data["basic-auth-user"]), string(s.Data["basic-auth-password"])
}
