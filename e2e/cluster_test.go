package e2e

// Snapshots in Kubernetes mode, on the real one-node dev cluster of
// cluster/up.sh (`make cluster`) with the images of cluster/images/build.sh:
// the provider runs out of cluster, a real MinIO server listens on the CNI
// bridge's gateway address (where pods reach the host), and function pods
// checkpoint themselves to it and restore from it through presigned URLs.
// The test never starts or stops the cluster; it skips, saying why, unless
// it finds one up and the images built.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

const (
	// clusterGateway is the CNI bridge's address on the host: pods reach
	// the provider and MinIO there (cluster/env.sh, POD_CIDR's .1).
	clusterGateway = "10.244.0.1"
	// The dev cluster's defaults (cluster/env.sh), and where
	// cluster/images/build.sh writes its images.
	defaultClusterDir = "/var/lib/pronghorn-cluster"
	defaultImagesDir  = "/opt/pronghorn/images"
)

// devCluster is the running dev cluster and the images to run on it.
type devCluster struct {
	kubeconfig string
	client     kubernetes.Interface
	ctr        []string // ctr and its flags for the cluster's containerd, k8s.io namespace
	imagesDir  string
}

// requireDevCluster skips unless the test runs as root, the dev cluster
// answers and the provider's image is built.
func requireDevCluster(t *testing.T) *devCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it imports images into the dev cluster's containerd and reads its admin kubeconfig")
	}
	dir := os.Getenv("PRONGHORN_CLUSTER_DIR")
	if dir == "" {
		dir = defaultClusterDir
	}
	c := &devCluster{kubeconfig: filepath.Join(dir, "admin.kubeconfig"), imagesDir: os.Getenv("PRONGHORN_IMAGES_DIR")}
	if c.imagesDir == "" {
		c.imagesDir = defaultImagesDir
	}
	if _, err := os.Stat(c.kubeconfig); err != nil {
		t.Skipf("no dev cluster: %s is missing (bring one up with `make cluster`)", c.kubeconfig)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Skipf("no dev cluster: %s: %v", c.kubeconfig, err)
	}
	cfg.Timeout = 5 * time.Second
	c.client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		t.Skipf("no dev cluster: the API server of %s does not answer (`make cluster`): %v", c.kubeconfig, err)
	}
	nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 || !clusterNodeReady(&nodes.Items[0]) {
		t.Skipf("no dev cluster: no Ready node (%v)", err)
	}
	if !clusterLocalAddress(clusterGateway) {
		t.Skipf("no host address %s: the dev cluster's CNI bridge is not up yet (it comes with the first pod; `make cluster` runs one)", clusterGateway)
	}
	ctr, err := exec.LookPath("ctr")
	if err != nil {
		t.Skip("needs ctr to import images into the dev cluster's containerd")
	}
	c.ctr = []string{ctr, "--address", filepath.Join(dir, "containerd", "containerd.sock"), "-n", "k8s.io"}
	if _, ok := c.imageRef("pronghorn"); !ok {
		t.Skipf("the cluster images are not built: no %s (run cluster/images/build.sh)", filepath.Join(c.imagesDir, "pronghorn.ref"))
	}
	if _, ok := snapshottest.MinIOBinary(); !ok {
		t.Skip("needs the MinIO server (scripts/install-minio.sh or PRONGHORN_MINIO)")
	}
	return c
}

func clusterNodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func clusterLocalAddress(ip string) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
			return true
		}
	}
	return false
}

// imageRef is the reference build.sh gave image name, if it built it.
func (c *devCluster) imageRef(name string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(c.imagesDir, name+".ref"))
	if err != nil {
		return "", false
	}
	if _, err := os.Stat(filepath.Join(c.imagesDir, name+".tar")); err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// importImage makes image name available to the cluster's pods (which never
// pull) and returns its reference. References carry the image ID, so one
// already there is the same image.
func (c *devCluster) importImage(t *testing.T, name string) string {
	t.Helper()
	ref, ok := c.imageRef(name)
	if !ok {
		t.Skipf("image %s is not built (cluster/images/build.sh %s)", name, name)
	}
	out, err := exec.Command(c.ctr[0], append(c.ctr[1:], "images", "ls", "-q")...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	if slices.Contains(strings.Fields(string(out)), ref) {
		return ref
	}
	start := time.Now()
	tarball := filepath.Join(c.imagesDir, name+".tar")
	if out, err := exec.Command(c.ctr[0], append(c.ctr[1:], "images", "import", tarball)...).CombinedOutput(); err != nil {
		t.Fatalf("ctr images import %s: %v\n%s", tarball, err, out)
	}
	t.Logf("imported %s in %s", ref, time.Since(start).Round(time.Millisecond))
	return ref
}

// testNamespace creates a namespace for the test's functions (annotated
// for OpenFaaS) and deletes it, with everything in it, at the end.
func (c *devCluster) testNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "pronghorn-e2e-", Annotations: map[string]string{"openfaas": "1"},
	}}
	ns, err := c.client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := c.client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("delete namespace %s: %v", ns.Name, err)
		}
	})
	// Pods need the namespace's default ServiceAccount, which the
	// controller-manager adds shortly after.
	clusterWait(t, 30*time.Second, "the default ServiceAccount of "+ns.Name, func() bool {
		_, err := c.client.CoreV1().ServiceAccounts(ns.Name).Get(t.Context(), "default", metav1.GetOptions{})
		return err == nil
	})
	return ns.Name
}

// clusterMinIO is a MinIO server on the bridge's address, where pods reach it.
type clusterMinIO struct {
	endpoint, accessKey, secretKey string
	client                         *minio.Client
}

func startClusterMinIO(t *testing.T) *clusterMinIO {
	t.Helper()
	bin, _ := snapshottest.MinIOBinary()
	port := clusterFreePort(t, clusterGateway)
	m := &clusterMinIO{endpoint: net.JoinHostPort(clusterGateway, fmt.Sprint(port)), accessKey: "pronghorn", secretKey: clusterToken(t)}
	logf, err := os.Create(filepath.Join(t.TempDir(), "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "server", "--quiet", "--address", m.endpoint, "--console-address", "127.0.0.1:0", t.TempDir())
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.accessKey, "MINIO_ROOT_PASSWORD="+m.secretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	m.client, err = minio.New(m.endpoint, &minio.Options{Creds: miniocreds.NewStaticV4(m.accessKey, m.secretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	// Ready means a signed call succeeds (/minio/health/ready answers
	// before the object layer is up).
	clusterWait(t, 30*time.Second, "MinIO on "+m.endpoint, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := m.client.ListBuckets(ctx)
		return err == nil
	})
	return m
}

// objects lists bucket's objects (key: size).
func (m *clusterMinIO) objects(t *testing.T, bucket string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for o := range m.client.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", bucket, o.Err)
		}
		out[o.Key] = o.Size
	}
	return out
}

// clusterSnapshotsOf lists the packed snapshots of function name taken at lineage
// request n (objects/<namespace>/<name>/<version>/r<n>-<worker>; their
// manifests are under manifests/).
func clusterSnapshotsOf(t *testing.T, m *clusterMinIO, bucket, name string, n int) []string {
	t.Helper()
	var out []string
	for k, size := range m.objects(t, bucket) {
		if strings.HasPrefix(k, "objects/") && strings.Contains(k, "/"+name+"/") && strings.Contains(k, fmt.Sprintf("/r%05d-", n)) && size > 0 {
			out = append(out, fmt.Sprintf("%s (%d bytes)", k, size))
		}
	}
	return out
}

func clusterFreePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func clusterToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

func clusterWait(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// startClusterProvider runs the provider binary on the host in kubernetes
// mode: reachable by pods at the bridge's address, snapshots in m's bucket.
func startClusterProvider(t *testing.T, c *devCluster, m *clusterMinIO, namespace, bucket string) *provider {
	t.Helper()
	return startClusterProviderAs(t, c, m, namespace, bucket, c.kubeconfig)
}

// startClusterProviderAs is startClusterProvider with the API server
// identity of kubeconfig, and extra flags.
func startClusterProviderAs(t *testing.T, c *devCluster, m *clusterMinIO, namespace, bucket, kubeconfig string, extra ...string) *provider {
	t.Helper()
	p, args := clusterProvider(t, c, m, namespace, bucket, kubeconfig, extra...)
	p.launch(15*time.Second, args...)
	return p
}

// clusterProvider is the provider startClusterProviderAs runs and its
// arguments, for a test that starts it again on the same port and data dir.
func clusterProvider(t *testing.T, c *devCluster, m *clusterMinIO, namespace, bucket, kubeconfig string, extra ...string) (*provider, []string) {
	t.Helper()
	agentImage := c.importImage(t, "pronghorn")
	secrets := t.TempDir()
	password := clusterToken(t)
	for name, value := range map[string]string{"basic-auth-user": "admin", "basic-auth-password": password} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := clusterFreePort(t, clusterGateway)
	p := &provider{t: t, bin: buildBinary(t), dataDir: t.TempDir(), url: fmt.Sprintf("http://127.0.0.1:%d", port),
		logs: &syncBuffer{}, user: "admin", password: password}
	return p, append([]string{"--backend", "kubernetes", "--kubeconfig", kubeconfig,
		"--port", fmt.Sprint(port), "--data-dir", p.dataDir, "--secret-mount-path", secrets,
		"--function-namespace", namespace,
		"--agent-image", agentImage, "--image-pull-policy", "Never",
		"--provider-url", fmt.Sprintf("http://%s:%d", clusterGateway, port),
		"--scale-from-zero-timeout", "2m",
		// Probe as early and as often as the kubelet allows, so pod start
		// times show the function's start more than the probe schedule
		// (faas-netes' defaults: 2s delay, every 2s).
		"--readiness-probe-initial-delay-seconds", "0", "--readiness-probe-period-seconds", "1",
		"--snapshot-store", "minio", "--minio-endpoint", m.endpoint, "--minio-bucket", bucket,
		"--minio-access-key", m.accessKey, "--minio-secret-key", m.secretKey}, extra...)
}

// clusterInvoke calls a counter function (POST, so no proxy caches it) and
// returns its count.
func clusterInvoke(t *testing.T, p *provider, name string) counterReply {
	t.Helper()
	code, body := p.do("POST", "/function/"+name, "x")
	var r counterReply
	if code != http.StatusOK {
		t.Fatalf("invoke %s = %d %q", name, code, body)
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("invoke %s: %q: %v", name, body, err)
	}
	return r
}

// clusterPods lists the pods of a function, oldest first.
func clusterPods(t *testing.T, c *devCluster, namespace, name string) []corev1.Pod {
	t.Helper()
	list, err := c.client.CoreV1().Pods(namespace).List(t.Context(), metav1.ListOptions{LabelSelector: "faas_function=" + name})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(list.Items, func(a, b corev1.Pod) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	return list.Items
}

// clusterAgentStatus reads the agent's /status on a pod's control port.
func clusterAgentStatus(t *testing.T, pod *corev1.Pod) agent.Status {
	t.Helper()
	var st agent.Status
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/status", net.JoinHostPort(pod.Status.PodIP, "8081")))
	if err != nil {
		t.Fatalf("agent status of %s: %v", pod.Name, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("agent status of %s: %v", pod.Name, err)
	}
	return st
}

// clusterAgentStartup is the startup time the agent of pod logged when its
// function became ready ("?" if it cannot be read).
func clusterAgentStartup(c *devCluster, namespace, pod, container string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := c.client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.Contains(line, `msg="function ready"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "startup="); ok {
				return v
			}
		}
	}
	return "?"
}

// clusterPodLogs returns the last lines of every container of the function's
// current pods, for a failure report.
func clusterPodLogs(c *devCluster, namespace, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "faas_function=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	tail := int64(60)
	for _, pod := range list.Items {
		fmt.Fprintf(&b, "--- pod %s (%s, deleting=%v)\n", pod.Name, pod.Status.Phase, pod.DeletionTimestamp != nil)
		for _, cs := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
			fmt.Fprintf(&b, "container %s: ready=%v restarts=%d state=%+v last=%+v\n", cs.Name, cs.Ready, cs.RestartCount, cs.State, cs.LastTerminationState)
		}
		for _, ct := range pod.Spec.Containers {
			raw, err := c.client.CoreV1().Pods(namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: ct.Name, TailLines: &tail}).DoRaw(ctx)
			if err != nil {
				fmt.Fprintf(&b, "logs of %s: %v\n", ct.Name, err)
				continue
			}
			fmt.Fprintf(&b, "logs of %s:\n%s\n", ct.Name, raw)
		}
	}
	return b.String()
}

// A function in each runtime that has an image, through the whole
// snapshot path on a real cluster: the fixed strategy checkpoints the pod
// at request 3 into MinIO, the provider evicts it after request 5, and its
// replacement restores the request-3 snapshot, so the 6th call counts 4.
// Logs the time from no ready pod to the first response, cold and restored.
func TestClusterSnapshots(t *testing.T) {
	c := requireDevCluster(t)
	namespace := c.testNamespace(t)
	m := startClusterMinIO(t)
	const bucket = "e2e-cluster"
	p := startClusterProvider(t, c, m, namespace, bucket)

	for _, fn := range []struct{ runtime, image string }{
		{"node", "counter-node"}, {"pypy", "counter-pypy"}, {"jvm", "counter-jvm"},
	} {
		t.Run(fn.runtime, func(t *testing.T) {
			if _, ok := c.imageRef(fn.image); !ok {
				t.Skipf("no %s image (cluster/images/build.sh %s)", fn.image, fn.image)
			}
			ref := c.importImage(t, fn.image)
			name := fn.image
			parent := p.t
			p.t = t // report through this subtest
			defer func() { p.t = parent }()
			t.Cleanup(func() {
				body, _ := json.Marshal(types.DeleteFunctionRequest{FunctionName: name, Namespace: namespace})
				req, _ := http.NewRequest("DELETE", p.url+"/system/functions", bytes.NewReader(body))
				req.SetBasicAuth(p.user, p.password)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("delete %s: %v", name, err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusNotFound {
					t.Errorf("delete %s = %s", name, resp.Status)
				}
			})
			t.Cleanup(func() { // before the delete above
				if t.Failed() {
					t.Logf("pods of %s:\n%s", name, clusterPodLogs(c, namespace, name))
				}
			})
			clusterCounter(t, c, m, p, p, namespace, bucket, name, ref, "")
		})
	}
}

// clusterCounter runs the flow through api (the provider, or a gateway in
// front of it) and reads the engine's state from direct, the provider
// itself (a gateway does not forward Pronghorn's own routes). The deploy
// names fprocess as faas-cli does (envProcess) when given; otherwise the
// image's own (its ENV, which the provider cannot see) through the
// com.pronghorn.agent annotation.
func clusterCounter(t *testing.T, c *devCluster, m *clusterMinIO, api, direct *provider, namespace, bucket, name, ref, fprocess string) {
	p := api
	// Cold: from the deploy (no pod) to the first pod ready and answering.
	// The fprocess is the image's own (its ENV), which the provider cannot
	// see: com.pronghorn.agent=true runs the agent, which reads it.
	annotations := map[string]string{
		"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "3", "com.pronghorn.evict-after": "5",
	}
	if fprocess == "" {
		annotations["com.pronghorn.agent"] = "true"
	}
	start := time.Now()
	p.must(http.StatusAccepted, "POST", "/system/functions", types.FunctionDeployment{
		Service: name, Image: ref, Namespace: namespace, EnvProcess: fprocess, Annotations: &annotations,
	})
	coldPod := clusterWaitPodReady(t, c, namespace, name, "")
	coldReady := time.Since(start)
	t1 := time.Now()
	if r := clusterInvoke(t, p, name); r.Count != 1 {
		t.Fatalf("call 1 counted %d, want 1", r.Count)
	}
	coldCall := time.Since(t1)
	coldFirst := time.Since(start)
	if st := clusterAgentStatus(t, coldPod); st.Restored {
		t.Fatalf("the first pod says it was restored: %+v", st)
	}
	coldStartup := clusterAgentStartup(c, namespace, coldPod.Name, name) // the pod goes with the eviction

	var warm []time.Duration
	for want := 2; want <= 5; want++ {
		t0 := time.Now()
		if r := clusterInvoke(t, p, name); r.Count != want {
			t.Fatalf("call %d counted %d (pid %d)", want, r.Count, r.PID)
		}
		warm = append(warm, time.Since(t0))
		if want == 3 {
			// The checkpoint runs after the call: wait for it (the object
			// is uploaded after the dump), or call 4 may reach the
			// function before the dump freezes it.
			clusterWait(t, time.Minute, "the snapshot of call 3 in MinIO", func() bool {
				return len(clusterSnapshotsOf(t, m, bucket, name, 3)) > 0
			})
		}
	}

	// After call 5 the provider evicts the pod and the Deployment replaces
	// it: from the eviction (no ready pod) to the replacement, restored,
	// ready and answering. Calling only once the replacement is ready also
	// keeps call 6 off the evicted pod, which still serves while it
	// terminates and which the provider's informer may not have seen go.
	clusterWait(t, time.Minute, "the eviction of pod "+coldPod.Name, func() bool {
		pod, err := c.client.CoreV1().Pods(namespace).Get(t.Context(), coldPod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && pod.DeletionTimestamp != nil)
	})
	evicted := time.Now()
	pod := clusterWaitPodReady(t, c, namespace, name, coldPod.UID)
	restoredReady := time.Since(evicted)
	t6 := time.Now()
	r := clusterInvoke(t, p, name)
	restoredCall := time.Since(t6)
	restoredFirst := time.Since(evicted)
	st := clusterAgentStatus(t, pod)
	if r.Count != 4 {
		t.Fatalf("call 6 (pod %s) counted %d, want 4: restored from the snapshot of call 3; agent status %+v", pod.Name, r.Count, st)
	}
	if !st.Restored {
		t.Errorf("the replacement pod's agent does not say it was restored: %+v", st)
	}
	snapshots := clusterSnapshotsOf(t, m, bucket, name, 3)
	if len(snapshots) != 1 {
		t.Errorf("%d request-3 snapshots of %s in bucket %s, want 1: %v", len(snapshots), name, bucket, m.objects(t, bucket))
	}
	// The engine's view of the function's current version, as its newest
	// pod sees it.
	if code, body := direct.do("GET", "/system/pronghorn/functions/"+name+"?namespace="+namespace, nil); code != http.StatusOK {
		t.Errorf("inspect %s = %d %q", name, code, body)
	} else {
		var es orchestrator.State
		if err := json.Unmarshal([]byte(body), &es); err != nil {
			t.Fatal(err)
		}
		if es.Checkpoints != 1 || es.Restores != 1 || es.ColdStarts != 1 || len(es.Pool) != 1 {
			t.Errorf("engine state: %+v", es)
		}
	}
	ms := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	t.Logf("%s: no ready pod -> pod ready -> first response: cold %s -> %s, restored %s -> %s", name,
		coldReady.Round(time.Millisecond), coldFirst.Round(time.Millisecond), restoredReady.Round(time.Millisecond), restoredFirst.Round(time.Millisecond))
	t.Logf("%s: agent start (process to accepting): cold %s, restored %s (fetch %s, CRIU restore %s); first call: cold %s, restored %s; calls 2-5 %v",
		name, coldStartup, clusterAgentStartup(c, namespace, pod.Name, name),
		ms(st.FetchTime), ms(st.RestoreTime), ms(coldCall), ms(restoredCall), clusterRound(warm))
	t.Logf("%s: snapshot %s", name, strings.Join(snapshots, ", "))
}

// clusterWaitPodReady waits for a Ready pod of the function other than the one
// with UID not, polling the API server.
func clusterWaitPodReady(t *testing.T, c *devCluster, namespace, name string, not k8stypes.UID) *corev1.Pod {
	t.Helper()
	var ready *corev1.Pod
	clusterWait(t, 2*time.Minute, "a ready pod of "+name, func() bool {
		for _, pod := range clusterPods(t, c, namespace, name) {
			if pod.UID != not && pod.DeletionTimestamp == nil && pod.Status.PodIP != "" && clusterPodReady(&pod) {
				ready = &pod
				return true
			}
		}
		return false
	})
	return ready
}

func clusterPodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func clusterRound(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Microsecond)
	}
	return out
}
