package e2e

// The API server crashing under a running provider (cluster/restart.sh
// --kill kube-apiserver): while it is down, invocations go on being served
// from the provider's pod caches, calls that need the API fail cleanly
// (an error status, no crash, nothing half-made), and once it is back the
// provider serves everything again without a restart: its informers
// resume, the function and its snapshot are still there, the deploy that
// failed goes through, and the next pod restores from the snapshot taken
// before the crash.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

func TestClusterAPIServerRestart(t *testing.T) {
	c := requireDevCluster(t)
	image := c.importImage(t, "counter-pypy")
	namespace := c.testNamespace(t)
	m := startClusterMinIO(t)
	const bucket = "e2e-apiserver"
	p := startClusterProvider(t, c, m, namespace, bucket)
	const name, late = "restart-counter", "restart-late"
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pods of %s:\n%s", name, clusterPodLogs(c, namespace, name))
		}
	})

	// Before: a function with a snapshot at request 2, evicted after 3.
	p.must(http.StatusAccepted, "POST", "/system/functions", types.FunctionDeployment{
		Service: name, Image: image, Namespace: namespace,
		Annotations: &map[string]string{"com.pronghorn.agent": "true",
			"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "2", "com.pronghorn.evict-after": "3"},
	})
	first := clusterWaitPodReady(t, c, namespace, name, "")
	for want := 1; want <= 2; want++ {
		if r := clusterInvoke(t, p, name); r.Count != want {
			t.Fatalf("call %d counted %d", want, r.Count)
		}
	}
	clusterWait(t, time.Minute, "the snapshot of call 2", func() bool { return len(clusterSnapshotsOf(t, m, bucket, name, 2)) > 0 })

	// Crash the API server; it comes back 5 s later.
	restart := exec.Command(filepath.Join(repoRoot(t), "cluster", "restart.sh"), "--kill", "kube-apiserver", "5")
	var restartOut strings.Builder
	restart.Stdout, restart.Stderr = &restartOut, &restartOut
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	waitRestart := func() {
		once.Do(func() {
			if err := restart.Wait(); err != nil {
				t.Fatalf("cluster/restart.sh: %v\n%s", err, restartOut.String())
			}
		})
	}
	t.Cleanup(waitRestart) // never leave the cluster without its API server
	down := time.Now()
	clusterWait(t, 10*time.Second, "the API server down", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err != nil
	})

	// While it is down. Invocations need no API call: the pod is in the
	// provider's cache.
	if r := clusterInvoke(t, p, name); r.Count != 3 {
		t.Errorf("call 3, with the API server down, counted %d, want 3", r.Count)
	}
	// Calls that need the API fail, quickly and with the reason.
	for _, call := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/system/functions?namespace=" + namespace, nil},
		{"POST", "/system/functions", types.FunctionDeployment{Service: late, Image: image, Namespace: namespace,
			Annotations: &map[string]string{"com.pronghorn.agent": "true"}}},
	} {
		t0 := time.Now()
		code, body := p.do(call.method, call.path, call.body)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "connection refused") {
			t.Errorf("%s %s with the API server down = %d %q, want a 503 saying why", call.method, call.path, code, body)
		}
		if d := time.Since(t0); d > 20*time.Second {
			t.Errorf("%s %s took %s to fail", call.method, call.path, d)
		}
		t.Logf("API server down: %s %s = %d %q in %s", call.method, call.path, code, strings.TrimSpace(body), since(t0))
	}
	if code, _ := p.do("GET", "/healthz", nil); code != http.StatusOK {
		t.Errorf("/healthz with the API server down = %d", code)
	}

	waitRestart()
	t.Logf("API server back %s after the crash:\n%s", since(down), strings.TrimSpace(restartOut.String()))

	// After: the failed deploy left nothing half-made, and goes through now.
	if _, err := c.client.AppsV1().Deployments(namespace).Get(t.Context(), late, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deployment %s after its deploy failed: %v", late, err)
	}
	p.must(http.StatusAccepted, "POST", "/system/functions", types.FunctionDeployment{Service: late, Image: image, Namespace: namespace,
		Annotations: &map[string]string{"com.pronghorn.agent": "true"}})
	clusterWaitPodReady(t, c, namespace, late, "")
	if r := clusterInvoke(t, p, late); r.Count != 1 {
		t.Errorf("%s's first call counted %d", late, r.Count)
	}
	// Nothing was lost: both functions listed; the evicted pod (call 3)
	// was replaced and the replacement restored the request-2 snapshot;
	// the engine's state is whole.
	var list []types.FunctionStatus
	if err := json.Unmarshal([]byte(p.must(http.StatusOK, "GET", "/system/functions?namespace="+namespace, nil)), &list); err != nil || len(list) != 2 {
		t.Errorf("functions after the restart: %+v (%v)", list, err)
	}
	clusterWait(t, time.Minute, "the eviction of "+first.Name, func() bool {
		pod, err := c.client.CoreV1().Pods(namespace).Get(t.Context(), first.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && pod.DeletionTimestamp != nil)
	})
	second := clusterWaitPodReady(t, c, namespace, name, first.UID)
	if r := clusterInvoke(t, p, name); r.Count != 3 {
		t.Errorf("the call after the restart counted %d, want 3 (restored from the request-2 snapshot)", r.Count)
	}
	if st := clusterAgentStatus(t, second); !st.Restored {
		t.Errorf("the pod after the restart was not restored: %+v", st)
	}
	var es orchestrator.State
	if err := json.Unmarshal([]byte(p.must(http.StatusOK, "GET", fmt.Sprintf("/system/pronghorn/functions/%s?namespace=%s", name, namespace), nil)), &es); err != nil {
		t.Fatal(err)
	}
	if es.Checkpoints != 1 || es.Restores != 1 || len(es.Pool) != 1 {
		t.Errorf("engine state after the restart: %+v", es)
	}
	if n := len(clusterSnapshotsOf(t, m, bucket, name, 2)); n != 1 {
		t.Errorf("%d request-2 snapshots in MinIO, want 1", n)
	}
}
