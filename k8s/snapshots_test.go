package k8s

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	bolt "go.etcd.io/bbolt"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// snapshotBackend is a backend with a coordinator over a real engine and
// dir store; tokens are checked by a fake TokenReview that knows one pod.
func snapshotBackend(t *testing.T) (*Backend, *fake.Clientset) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := orchestrator.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	store, err := snapshot.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	coord, err := coordinator.New(db, coordinator.Config{Engine: engine, Store: presigning{store}, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	b, err := New(client, Config{
		AgentImage: testAgent, ProviderURL: "http://pronghorn.openfaas:8080", Snapshots: coord,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = b.Close(ctx)
		_ = coord.Close(ctx)
		_ = engine.Close(ctx)
		db.Close()
	})
	return b, client
}

// presigning is a dir store that hands out URLs, as MinIO does; the real
// store is tested in snapshot/.
type presigning struct{ *snapshot.DirStore }

func (p presigning) PresignGet(ctx context.Context, key string, ttl time.Duration) (*url.URL, error) {
	return &url.URL{Scheme: "http", Host: "store", Path: "/get/" + key}, nil
}

func (p presigning) PresignPut(ctx context.Context, key string, ttl time.Duration) (*url.URL, error) {
	return &url.URL{Scheme: "http", Host: "store", Path: "/put/" + key}, nil
}

func (p presigning) Commit(ctx context.Context, key string, m snapshot.Manifest) (snapshot.Manifest, error) {
	m.Key = key
	return m, nil
}

// reviewTokens answers TokenReviews as the API server would for tokens
// "good" (pod p1 of fn, audience pronghorn only) and anything else.
func reviewTokens(client *fake.Clientset, podUID string) {
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		out := tr.DeepCopy()
		if tr.Spec.Token == "good" && len(tr.Spec.Audiences) == 1 && tr.Spec.Audiences[0] == TokenAudience {
			out.Status = authnv1.TokenReviewStatus{Authenticated: true, Audiences: tr.Spec.Audiences, User: authnv1.UserInfo{
				Username: "system:serviceaccount:" + testNS + ":default",
				Extra: map[string]authnv1.ExtraValue{
					podNameExtra: {"p1"}, podUIDExtra: {podUID},
				},
			}}
		}
		return true, out, nil
	})
}

func TestSnapshotPodSpec(t *testing.T) {
	b, client := snapshotBackend(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name       string
		strategy   string
		privileged bool
	}{
		{"snapshotting", "fixed", true},
		{"cold", "cold", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := "fn-" + tc.strategy
			req := types.FunctionDeployment{Service: fn, Image: "img", EnvProcess: "run",
				Annotations: &map[string]string{"com.pronghorn.strategy": tc.strategy}}
			if err := b.Deploy(ctx, req); err != nil {
				t.Fatal(err)
			}
			d, err := client.AppsV1().Deployments(testNS).Get(ctx, fn, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			privileged := c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
			var token *corev1.ServiceAccountTokenProjection
			for _, v := range pod.Volumes {
				if v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ServiceAccountToken != nil {
					token = v.Projected.Sources[0].ServiceAccountToken
				}
			}
			if privileged != tc.privileged || (token != nil) != tc.privileged {
				t.Fatalf("privileged %v, token %+v; want both only when snapshotting", privileged, token)
			}
			if token != nil && (token.Audience != TokenAudience || *token.ExpirationSeconds != tokenTTL) {
				t.Errorf("token projection %+v", token)
			}
			if *pod.AutomountServiceAccountToken {
				t.Error("the API server token is mounted")
			}
		})
	}
}

func TestAgentPlanAuthentication(t *testing.T) {
	b, client := snapshotBackend(t)
	ctx := ctxT(t)
	req := types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run",
		Annotations: &map[string]string{"com.pronghorn.strategy": "fixed"}}
	if err := b.Deploy(ctx, req); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: testNS, UID: "uid-1", Labels: map[string]string{functionLabel: "fn"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "fn", Image: "img", Env: []corev1.EnvVar{{Name: envProcess, Value: "run"}}}}},
		Status: corev1.PodStatus{PodIP: "10.244.0.7", ContainerStatuses: []corev1.ContainerStatus{
			{Name: "fn", ImageID: "sha256:0123"},
		}},
	}
	if _, err := client.CoreV1().Pods(testNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reviewTokens(client, "uid-1")
	srv := httptest.NewServer(b.AgentHandler())
	defer srv.Close()
	ask := func(token string) (int, string) {
		r, _ := http.NewRequest(http.MethodPost, srv.URL+PlanPath, strings.NewReader(`{"pod":"p1","namespace":"openfaas-fn"}`))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		token string
		want  int
	}{
		{"", http.StatusUnauthorized},
		{"forged", http.StatusUnauthorized},
	} {
		if code, body := ask(tc.token); code != tc.want {
			t.Errorf("token %q: %d %s, want %d", tc.token, code, body, tc.want)
		}
	}
	if b.podWorkerOf("uid-1") != nil {
		t.Fatal("a refused pod was planned")
	}
	code, body := ask("good")
	var plan agent.StartPlan
	if code != http.StatusOK || json.Unmarshal([]byte(body), &plan) != nil || plan.Restore != nil {
		t.Fatalf("first pod: %d %s, want a cold plan", code, body)
	}
	pw := b.podWorkerOf("uid-1")
	if pw == nil || pw.snap.Key() == "" || !strings.HasPrefix(pw.snap.Key(), testNS+"/fn@") {
		t.Fatalf("planned pod: %+v", pw)
	}
	// What the pod reports back to a provider restarted while it runs.
	if plan.Version == "" || pw.snap.Key() != testNS+"/fn@"+plan.Version || plan.CheckpointAt != 1 {
		t.Errorf("plan %+v of worker %s: want its version and checkpoint request (fixed(1))", plan, pw.snap.Key())
	}
	// The pod is replaced under the same name: its token names the old UID.
	if err := client.CoreV1().Pods(testNS).Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.UID = "uid-2"
	if _, err := client.CoreV1().Pods(testNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, body := ask("good"); code != http.StatusUnauthorized {
		t.Fatalf("a token of a pod that is gone: %d %s", code, body)
	}
	b.podGone("uid-1")
	if b.podWorkerOf("uid-1") != nil {
		t.Fatal("a gone pod is still tracked")
	}
}
