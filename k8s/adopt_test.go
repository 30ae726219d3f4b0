package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// fakeAgent is a function pod's agent as the provider sees it on the
// control port: its status, and checkpoints it reports taken.
type fakeAgent struct {
	srv *httptest.Server

	mu          sync.Mutex
	status      agent.Status
	statusReads int
	// checkpointedAt is the agent's count of calls served at each
	// checkpoint: where the function's state stood in it.
	checkpointedAt []int64
}

func newFakeAgent(t *testing.T, st agent.Status) *fakeAgent {
	a := &fakeAgent{status: st}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.statusReads++
		st := a.status
		a.mu.Unlock()
		if !st.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.checkpointedAt = append(a.checkpointedAt, a.status.Served)
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(agent.CheckpointResult{ImageBytes: 100, PackedBytes: 40, SHA256: strings.Repeat("ab", 32), PID: 1000})
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// serve counts one call the function answered, as the agent does.
func (a *fakeAgent) serve() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Served++
}

func (a *fakeAgent) reads() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statusReads
}

func (a *fakeAgent) checkpoints() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int64(nil), a.checkpointedAt...)
}

// routeAgent sends the backend's requests to pods' control ports to a,
// or, with a nil a, refuses them as an agent that does not listen would.
func routeAgent(b *Backend, a *fakeAgent) {
	b.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if a == nil || !strings.HasSuffix(addr, ":8081") {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
		}
		return (&net.Dialer{}).DialContext(ctx, network, a.srv.Listener.Addr().String())
	}
}

// runningPod is a ready pod of function fn started from the Deployment a
// deploy made, as the kubelet reports it.
func runningPod(name string, uid k8stypes.UID, podLabels map[string]string) *corev1.Pod {
	labels := map[string]string{functionLabel: "fn"}
	for k, v := range podLabels {
		labels[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, UID: uid, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "fn", Image: "img", Env: []corev1.EnvVar{{Name: envProcess, Value: "run"}}}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.244.0.7",
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "fn", ImageID: "sha256:0123"}},
		},
	}
}

// podVersion is the version a provider planning pod's start would have
// told its agent.
func podVersion(t *testing.T, b *Backend, pod *corev1.Pod) string {
	t.Helper()
	in, err := b.versionInputs(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	key, err := b.cfg.Snapshots.CurrentKey(b.cfg.Snapshots.Function(testNS, "fn"), in)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(key, testNS+"/fn@")
}

// logTo makes b log into a buffer the test reads.
func logTo(b *Backend) *syncLog {
	l := &syncLog{}
	b.log = slog.New(slog.NewTextHandler(l, nil))
	return l
}

type syncLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// evictions records the agent's count of calls served when pods were
// deleted: which call the provider evicted them after.
func evictions(client *fake.Clientset, a *fakeAgent) func() []int64 {
	var mu sync.Mutex
	var at []int64
	client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		a.mu.Lock()
		n := a.status.Served
		a.mu.Unlock()
		mu.Lock()
		at = append(at, n)
		mu.Unlock()
		return false, nil, nil
	})
	return func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]int64(nil), at...)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// call invokes fn once through a as the handlers do: acquire a pod, the
// agent serves, release.
func call(t *testing.T, b *Backend, a *fakeAgent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	l, err := b.Acquire(ctx, testNS, "fn")
	if err != nil {
		t.Fatal(err)
	}
	a.serve()
	l.Release(provider.Outcome{StatusCode: http.StatusOK, Upstream: time.Millisecond})
}

// A provider restarted while a fixed(3)/evict-after(5) function's pod runs
// takes over the pods an earlier provider planned, where they stand: the
// checkpoint at request 3 still happens if it is ahead, and eviction
// counts every call the pod served. Pods it cannot vouch for are served
// and left alone, saying why.
func TestAdoptRunningPods(t *testing.T) {
	const planned = "planned" // Plan.Version: the pod's own version
	for _, tc := range []struct {
		name       string
		agentless  bool
		podLabels  map[string]string
		unreached  bool
		planHere   bool // the pod asked this provider for its plan
		status     agent.Status
		calls      int
		adopted    bool
		checkpoint []int64 // the agent's count at each checkpoint
		evictAt    []int64 // the agent's count at each eviction
		reads      int     // status reads; -1: any
		log        string
	}{
		{name: "cold, checkpoint ahead", status: agent.Status{Ready: true, Served: 1, Plan: &agent.PlanStatus{Version: planned, CheckpointAt: 3}},
			calls: 4, adopted: true, checkpoint: []int64{3}, evictAt: []int64{5}, reads: 1, log: `msg="pod adopted"`},
		{name: "checkpoint behind", status: agent.Status{Ready: true, Served: 3, Plan: &agent.PlanStatus{Version: planned, CheckpointAt: 3}},
			calls: 2, adopted: true, evictAt: []int64{5}, reads: 1},
		{name: "restored at 3", status: agent.Status{Ready: true, Restored: true, Plan: &agent.PlanStatus{Version: planned, StartLineage: 3, Snapshot: "openfaas-fn/fn/v/r00003-x"}},
			calls: 5, adopted: true, evictAt: []int64{5}, reads: 1},
		{name: "due for eviction already", status: agent.Status{Ready: true, Served: 5, Plan: &agent.PlanStatus{Version: planned, CheckpointAt: 3}},
			adopted: true, evictAt: []int64{5}, reads: 1, log: "dueForEviction=true"},
		{name: "older agent", status: agent.Status{Ready: true, Served: 1},
			calls: 5, reads: 1, log: "no start plan"},
		{name: "agent unreachable", unreached: true,
			calls: 5, reads: 0, log: "does not answer"},
		{name: "started without snapshots", status: agent.Status{Ready: true, Served: 1, Plan: &agent.PlanStatus{}},
			calls: 5, reads: 1, log: "planned without snapshots"},
		{name: "another version", status: agent.Status{Ready: true, Served: 1, Plan: &agent.PlanStatus{Version: "0000000000000000", CheckpointAt: 3}},
			calls: 5, reads: 1, log: "another version"},
		{name: "earlier generation", podLabels: map[string]string{uidLabel: "before-update"}, status: agent.Status{Ready: true, Served: 1, Plan: &agent.PlanStatus{Version: planned, CheckpointAt: 3}},
			calls: 5, reads: 0, log: "earlier generation"},
		{name: "agentless", agentless: true, status: agent.Status{Ready: true, Served: 1, Plan: &agent.PlanStatus{Version: planned, CheckpointAt: 3}},
			calls: 5, reads: 0, log: "without the agent"},
		{name: "planned by this provider", planHere: true, status: agent.Status{Ready: true},
			calls: 5, adopted: true, checkpoint: []int64{3}, evictAt: []int64{5}, reads: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, client := snapshotBackend(t)
			logs := logTo(b)
			ctx := t.Context()
			annotations := map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "3", "com.pronghorn.evict-after": "5"}
			if tc.agentless {
				annotations[AgentAnnotation] = "false"
			}
			if err := b.Deploy(ctx, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run", Annotations: &annotations}); err != nil {
				t.Fatal(err)
			}
			pod := runningPod("p1", "uid-1", tc.podLabels)
			if tc.status.Plan != nil && tc.status.Plan.Version == planned {
				tc.status.Plan.Version = podVersion(t, b, pod)
			}
			if tc.planHere {
				// Its agent asks for its plan before the function runs:
				// the pod is not ready yet.
				pod.Status.Conditions[0].Status = corev1.ConditionFalse
			}
			if _, err := client.CoreV1().Pods(testNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			a := newFakeAgent(t, tc.status)
			if tc.unreached {
				routeAgent(b, nil)
			} else {
				routeAgent(b, a)
			}
			evicted := evictions(client, a)
			if tc.planHere {
				reviewTokens(client, "uid-1")
				if _, code, err := b.plan(ctx, "good"); err != nil || code != http.StatusOK {
					t.Fatalf("plan: %d %v", code, err)
				}
				pod.Status.Conditions[0].Status = corev1.ConditionTrue
				if _, err := client.CoreV1().Pods(testNS).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}

			// The provider sees the pod: its informer's first listing.
			if _, err := b.cacheFor(testNS); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= tc.calls && len(evicted()) == 0; i++ {
				call(t, b, a)
				pw := b.podWorkerOf("uid-1")
				if pw != nil {
					waitUntil(t, "the checkpoint", func() bool { return !pw.snap.Checkpointing() })
				}
				time.Sleep(10 * time.Millisecond) // an eviction is a goroutine's
			}
			if len(tc.evictAt) > 0 {
				waitUntil(t, "the eviction", func() bool { return len(evicted()) > 0 })
			}
			if got := evicted(); !slices.Equal(got, tc.evictAt) {
				t.Errorf("evicted at the agent's counts %v, want %v", got, tc.evictAt)
			}
			if got := a.checkpoints(); !slices.Equal(got, tc.checkpoint) {
				t.Errorf("checkpoints at the agent's counts %v, want %v", got, tc.checkpoint)
			}
			if adopted := b.podWorkerOf("uid-1") != nil || len(tc.evictAt) > 0; adopted != tc.adopted {
				t.Errorf("taking part in snapshots: %v, want %v", adopted, tc.adopted)
			}
			if tc.reads >= 0 && a.reads() != tc.reads {
				t.Errorf("%d status reads, want %d", a.reads(), tc.reads)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, logs)
			}
			if !tc.adopted && tc.log != "" && !strings.Contains(logs.String(), "pod left alone") {
				t.Errorf("no line says the pod is left alone:\n%s", logs)
			}
		})
	}
}

// A call in flight while the adoption reads the pod's count is counted
// once: the adoption waits for it to end before reading, so the agent
// counts it and Observe does not. Counted twice, the checkpoint planned at
// request 3 would be taken one call early.
func TestAdoptCountsCallInFlightOnce(t *testing.T) {
	b, client := snapshotBackend(t)
	b.adoptPolicy.hold = time.Millisecond // calls flow while the adoption is slow
	ctx := t.Context()
	annotations := map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "3", "com.pronghorn.evict-after": "5"}
	if err := b.Deploy(ctx, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run", Annotations: &annotations}); err != nil {
		t.Fatal(err)
	}
	pod := runningPod("p1", "uid-1", nil)
	a := newFakeAgent(t, agent.Status{Ready: true, Served: 1, Plan: &agent.PlanStatus{Version: podVersion(t, b, pod), CheckpointAt: 3}})
	routeAgent(b, a)
	if _, err := client.CoreV1().Pods(testNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The adoption cannot read the pod (and tries again) until the call
	// below is in flight.
	b.adoptPolicy.attempts, b.adoptPolicy.backoff = 20, 20*time.Millisecond
	var stalled atomic.Bool
	stalled.Store(true)
	client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if stalled.Load() {
			return true, nil, apierrors.NewServiceUnavailable("busy")
		}
		return false, nil, nil
	})

	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := b.Acquire(lctx, testNS, "fn") // call 2, before the adoption
	if err != nil {
		t.Fatal(err)
	}
	a.serve()
	stalled.Store(false)
	time.Sleep(100 * time.Millisecond) // the adoption now waits for the call
	if b.podWorkerOf("uid-1") != nil {
		t.Fatal("adopted while a call was in flight")
	}
	l.Release(provider.Outcome{StatusCode: http.StatusOK, Upstream: time.Millisecond})
	waitUntil(t, "the adoption", func() bool { return b.podWorkerOf("uid-1") != nil })
	call(t, b, a) // call 3: the checkpoint
	pw := b.podWorkerOf("uid-1")
	waitUntil(t, "the checkpoint", func() bool { return !pw.snap.Checkpointing() })
	if got := a.checkpoints(); !slices.Equal(got, []int64{3}) {
		t.Fatalf("checkpoints at the agent's counts %v, want [3]", got)
	}
	if _, err := client.CoreV1().Pods(testNS).Get(ctx, "p1", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatal("evicted early")
	}
}

// An API server that does not answer the adoption keeps calls from the pod
// for adoptPolicy.hold at most; then they flow, uncounted.
func TestAdoptHoldIsBounded(t *testing.T) {
	b, client := snapshotBackend(t)
	b.adoptPolicy.hold = 50 * time.Millisecond
	b.adoptPolicy.attempts, b.adoptPolicy.backoff = 3, 100*time.Millisecond
	logs := logTo(b)
	ctx := t.Context()
	annotations := map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "3"}
	if err := b.Deploy(ctx, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run", Annotations: &annotations}); err != nil {
		t.Fatal(err)
	}
	pod := runningPod("p1", "uid-1", nil)
	a := newFakeAgent(t, agent.Status{Ready: true, Served: 1, Plan: &agent.PlanStatus{Version: podVersion(t, b, pod), CheckpointAt: 3}})
	routeAgent(b, a)
	if _, err := client.CoreV1().Pods(testNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	start := time.Now()
	call(t, b, a)
	if took := time.Since(start); took > time.Second {
		t.Errorf("the first call waited %s for an adoption that cannot go on", took)
	}
	waitUntil(t, "the adoption to give up", func() bool { return strings.Contains(logs.String(), "pod left alone") })
	if b.podWorkerOf("uid-1") != nil || a.reads() != 0 || !strings.Contains(logs.String(), "attempts=3") {
		t.Errorf("adopted %v after %d status reads; log:\n%s", b.podWorkerOf("uid-1") != nil, a.reads(), logs)
	}
	call(t, b, a) // settled: served as any pod
}
