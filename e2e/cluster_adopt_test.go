package e2e

// The provider restarted while a function's pod runs: the new provider
// plans none of that pod's start, yet takes it over where it stands (the
// start plan its agent followed, the calls it served) and checkpoints it
// at the request the earlier provider planned, evicts it by its real
// count, and the replacement restores that snapshot.

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

func TestClusterProviderRestartAdoptsPods(t *testing.T) {
	c := requireDevCluster(t)
	image := c.importImage(t, "counter-pypy")
	namespace := c.testNamespace(t)
	m := startClusterMinIO(t)
	const bucket, name = "e2e-adopt", "adopt-counter"
	p, args := clusterProvider(t, c, m, namespace, bucket, c.kubeconfig)
	p.launch(15*time.Second, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pods of %s:\n%s", name, clusterPodLogs(c, namespace, name))
		}
	})

	p.must(http.StatusAccepted, "POST", "/system/functions", types.FunctionDeployment{
		Service: name, Image: image, Namespace: namespace,
		Annotations: &map[string]string{"com.pronghorn.agent": "true",
			"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "3", "com.pronghorn.evict-after": "5"},
	})
	first := clusterWaitPodReady(t, c, namespace, name, "")
	if r := clusterInvoke(t, p, name); r.Count != 1 {
		t.Fatalf("call 1 counted %d", r.Count)
	}

	// The provider goes and comes back on the same port and state file;
	// the pod runs on, planned by the provider that went.
	t0 := time.Now()
	p.stop(syscall.SIGTERM)
	p.launch(15*time.Second, args...)
	restarted := time.Since(t0)
	if pod, err := c.client.CoreV1().Pods(namespace).Get(t.Context(), first.Name, metav1.GetOptions{}); err != nil || pod.UID != first.UID {
		t.Fatalf("the pod did not outlive the provider: %v", err)
	}

	// The first call after the restart waits for the pod's adoption.
	t2 := time.Now()
	if r := clusterInvoke(t, p, name); r.Count != 2 {
		t.Fatalf("call 2 (after the restart) counted %d", r.Count)
	}
	firstCall := time.Since(t2)
	adopted := regexp.MustCompile(`msg="pod adopted".*pod=` + regexp.QuoteMeta(first.Name) + `.*lineage=1 served=1 checkpointAt=3 dueForEviction=false`)
	if !adopted.MatchString(p.logs.String()) {
		t.Fatalf("the provider log does not say it adopted pod %s at lineage 1", first.Name)
	}
	st := clusterAgentStatus(t, first)
	if st.Plan == nil || st.Plan.CheckpointAt != 3 || st.Plan.StartLineage != 0 || st.Served != 2 {
		t.Fatalf("agent status of the adopted pod: %+v (plan %+v)", st, st.Plan)
	}

	// The checkpoint the first provider planned, at request 3.
	t3 := time.Now()
	if r := clusterInvoke(t, p, name); r.Count != 3 {
		t.Fatalf("call 3 counted %d", r.Count)
	}
	clusterWait(t, time.Minute, "the snapshot of call 3 in MinIO", func() bool { return len(clusterSnapshotsOf(t, m, bucket, name, 3)) > 0 })
	checkpointed := time.Since(t3)
	for want := 4; want <= 5; want++ {
		if r := clusterInvoke(t, p, name); r.Count != want {
			t.Fatalf("call %d counted %d", want, r.Count)
		}
	}

	// Evicted after its 5th call, counted across both providers; the
	// replacement restores the request-3 snapshot.
	clusterWait(t, time.Minute, "the eviction of pod "+first.Name, func() bool {
		pod, err := c.client.CoreV1().Pods(namespace).Get(t.Context(), first.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && pod.DeletionTimestamp != nil)
	})
	evicted := time.Now()
	next := clusterWaitPodReady(t, c, namespace, name, first.UID)
	r := clusterInvoke(t, p, name)
	restoredFirst := time.Since(evicted)
	st = clusterAgentStatus(t, next)
	if r.Count != 4 || !st.Restored || st.Plan == nil || st.Plan.StartLineage != 3 {
		t.Fatalf("call 6 (pod %s) counted %d, want 4 from the request-3 snapshot; agent status %+v (plan %+v)", next.Name, r.Count, st, st.Plan)
	}
	if snaps := clusterSnapshotsOf(t, m, bucket, name, 3); len(snaps) != 1 || !strings.Contains(snaps[0], string(first.UID)) {
		t.Errorf("request-3 snapshots %v, want one of pod %s", snaps, first.UID)
	}
	// The engine's counters span both providers: one cold start (planned
	// by the first), one checkpoint (taken by the second), one restore.
	if code, body := p.do("GET", "/system/pronghorn/functions/"+name+"?namespace="+namespace, nil); code != http.StatusOK {
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
	t.Logf("provider restart %s; first call after it (adoption) %s; call 3 to its snapshot in MinIO %s; eviction to the restored pod's first answer %s",
		restarted.Round(time.Millisecond), firstCall.Round(time.Millisecond), checkpointed.Round(time.Millisecond), restoredFirst.Round(time.Millisecond))
}
