package k8s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

type podState int

const (
	ready podState = iota
	notReady
	noIP
	terminating
	pending
)

func functionPod(fn, name, ip string, state podState) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, UID: k8stypes.UID("uid-" + name),
			Labels: map[string]string{functionLabel: fn},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	switch state {
	case notReady:
		p.Status.Conditions[0].Status = corev1.ConditionFalse
	case noIP:
		p.Status.PodIP = ""
	case terminating:
		now := metav1.Now()
		p.DeletionTimestamp = &now
		p.Finalizers = []string{"test"}
	case pending:
		p.Status.Phase = corev1.PodPending
		p.Status.Conditions = nil
	}
	return p
}

func deployFn(t *testing.T, b *Backend, name string, scaleMin string) {
	t.Helper()
	req := types.FunctionDeployment{Service: name, Image: "img", EnvProcess: "run"}
	if scaleMin != "" {
		req.Labels = labels(scaleMinLabel, scaleMin)
	}
	if err := b.Deploy(ctxT(t), req); err != nil {
		t.Fatal(err)
	}
}

func TestAcquirePicksReadyPodsRoundRobin(t *testing.T) {
	b, client := newBackend(t,
		functionPod("fn", "fn-a", "10.0.0.1", ready),
		functionPod("fn", "fn-b", "10.0.0.2", ready),
		functionPod("fn", "fn-c", "10.0.0.3", notReady),
		functionPod("fn", "fn-d", "10.0.0.4", noIP),
		functionPod("fn", "fn-e", "10.0.0.5", terminating),
		functionPod("other", "other-a", "10.0.0.9", ready),
	)
	deployFn(t, b, "fn", "")
	ctx := ctxT(t)

	seen := map[string]int{}
	for range 6 {
		l, err := b.Acquire(ctx, "", "fn")
		if err != nil {
			t.Fatal(err)
		}
		if l.URL().Scheme != "http" || l.URL().Port() != "8080" {
			t.Errorf("url = %s", l.URL())
		}
		seen[l.URL().Hostname()]++
		tr, ok := l.Transport().(*http.Transport)
		if !ok || !tr.DisableCompression || tr.MaxIdleConnsPerHost != 256 || tr != b.transport {
			t.Errorf("transport = %#v, want the backend's shared one", l.Transport())
		}
		l.Release(provider.Outcome{StatusCode: 200})
	}
	if len(seen) != 2 || seen["10.0.0.1"] != 3 || seen["10.0.0.2"] != 3 {
		t.Errorf("picks = %v, want 10.0.0.1 and 10.0.0.2 three times each", seen)
	}

	// A pod with a call in flight is passed over while another is idle.
	held, err := b.Acquire(ctx, testNS, "fn")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		l, err := b.Acquire(ctx, testNS, "fn")
		if err != nil {
			t.Fatal(err)
		}
		if l.URL().Host == held.URL().Host {
			t.Errorf("picked the busy pod %s while the other was idle", l.URL().Host)
		}
		l.Release(provider.Outcome{StatusCode: 200})
	}
	held.Release(provider.Outcome{StatusCode: 200})
	held.Release(provider.Outcome{StatusCode: 200}) // a second release must not count twice

	st, err := b.Function(ctx, testNS, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if st.InvocationCount != 11 {
		t.Errorf("invocationCount = %v, want 11", st.InvocationCount)
	}

	// A pod that turns ready is picked up from the informer's watch.
	p := functionPod("fn", "fn-c", "10.0.0.3", ready)
	if _, err := client.CoreV1().Pods(testNS).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for found := false; !found; {
		if time.Now().After(deadline) {
			t.Fatal("pod fn-c never picked after turning ready")
		}
		l, err := b.Acquire(ctx, testNS, "fn")
		if err != nil {
			t.Fatal(err)
		}
		found = l.URL().Hostname() == "10.0.0.3"
		l.Release(provider.Outcome{})
	}

	if _, err := b.Acquire(ctx, testNS, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("acquire of a missing function: err = %v", err)
	}
	if _, err := b.Acquire(ctx, "elsewhere", "fn"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("acquire in another namespace: err = %v", err)
	}
}

func TestAcquireScaleFromZero(t *testing.T) {
	tests := []struct {
		name     string
		becomes  bool // a pod turns ready while the invocation waits
		cancel   bool // the client goes away while waiting
		wantErr  error
		replicas int32
	}{
		{name: "times out when nothing becomes ready", wantErr: errdefs.ErrUnavailable, replicas: 1},
		{name: "returns the pod that becomes ready", becomes: true, replicas: 1},
		{name: "client gone", cancel: true, wantErr: context.Canceled, replicas: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackend(t)
			b.cfg.ScaleFromZeroTimeout = 300 * time.Millisecond
			if tt.becomes {
				b.cfg.ScaleFromZeroTimeout = 5 * time.Second
			}
			deployFn(t, b, "fn", "0")
			ctx, cancel := context.WithCancel(ctxT(t))
			defer cancel()
			if tt.becomes {
				go func() {
					// Stand in for the Deployment controller and kubelet:
					// once scaled to one, a pod appears and turns ready.
					for ctx.Err() == nil {
						if d, err := client.AppsV1().Deployments(testNS).Get(ctx, "fn", metav1.GetOptions{}); err == nil && *d.Spec.Replicas == 1 {
							_, _ = client.CoreV1().Pods(testNS).Create(ctx, functionPod("fn", "fn-new", "10.0.1.1", ready), metav1.CreateOptions{})
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
				}()
			}
			if tt.cancel {
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			start := time.Now()
			l, err := b.Acquire(ctx, testNS, "fn")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr == errdefs.ErrUnavailable && time.Since(start) < 300*time.Millisecond {
					t.Errorf("gave up after %s, before the timeout", time.Since(start))
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if l.URL().Host != "10.0.1.1:8080" {
					t.Errorf("url = %s", l.URL())
				}
				l.Release(provider.Outcome{StatusCode: 200})
			}
			if got := *getDeployment(t, client, "fn").Spec.Replicas; got != tt.replicas {
				t.Errorf("replicas = %d, want %d", got, tt.replicas)
			}
		})
	}
}

func TestScaleFromZeroNeverScalesDown(t *testing.T) {
	b, client := newBackend(t)
	deployFn(t, b, "fn", "4")
	b.scaleFromZero(ctxT(t), testNS, "fn")
	if got := *getDeployment(t, client, "fn").Spec.Replicas; got != 4 {
		t.Errorf("replicas = %d, want 4 untouched", got)
	}
}

func TestQueryLogs(t *testing.T) {
	tests := []struct {
		name     string
		req      logs.Request
		wantPods []string
	}{
		{"all pods", logs.Request{Name: "fn"}, []string{"fn-a", "fn-b"}},
		{"one instance", logs.Request{Name: "fn", Namespace: testNS, Instance: "fn-b", Tail: 10, Since: ptr(time.Now().Add(-time.Hour))}, []string{"fn-b"}},
		{"follow ends with the streams", logs.Request{Name: "fn", Follow: true}, []string{"fn-a", "fn-b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newBackend(t,
				functionPod("fn", "fn-a", "10.0.0.1", ready),
				functionPod("fn", "fn-b", "10.0.0.2", notReady),
				functionPod("fn", "fn-p", "", pending),
				functionPod("other", "other-a", "10.0.0.3", ready),
			)
			deployFn(t, b, "fn", "")
			ch, err := b.Query(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for m := range ch {
				if m.Name != "fn" || m.Namespace != testNS || m.Timestamp.IsZero() {
					t.Errorf("message = %+v", m)
				}
				got[m.Instance] = m.Text
			}
			if len(got) != len(tt.wantPods) {
				t.Errorf("lines from %v, want %v", got, tt.wantPods)
			}
			for _, p := range tt.wantPods {
				if got[p] != "fake logs" {
					t.Errorf("pod %s: text %q, want the fake clientset's \"fake logs\"", p, got[p])
				}
			}
		})
	}

	b, _ := newBackend(t)
	if _, err := b.Query(ctxT(t), logs.Request{Name: "nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("logs of a missing function: err = %v", err)
	}
}

func TestSplitTimestamp(t *testing.T) {
	ts, text := splitTimestamp("2026-01-02T03:04:05.123456789Z hello world")
	if want := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC); !ts.Equal(want) || text != "hello world" {
		t.Errorf("got %v %q", ts, text)
	}
	for _, line := range []string{"no timestamp here", "", "2026-13-99 x"} {
		if _, text := splitTimestamp(line); text != line {
			t.Errorf("%q: text %q, want the line unchanged", line, text)
		}
	}
}

func TestAPIErrorKinds(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		err  error
		want error
	}{
		{apierrors.NewNotFound(gr, "fn"), errdefs.ErrNotFound},
		{apierrors.NewAlreadyExists(gr, "fn"), errdefs.ErrAlreadyExists},
		{apierrors.NewBadRequest("no"), errdefs.ErrInvalid},
		{apierrors.NewConflict(gr, "fn", errors.New("changed")), errdefs.ErrUnavailable},
		{apierrors.NewTooManyRequests("slow down", 1), errdefs.ErrUnavailable},
		{fmt.Errorf("already kinded: %w", errdefs.ErrInvalid), errdefs.ErrInvalid},
		// The API server not answering at all (restarting): client-go's
		// *url.Error around the refused connection.
		{&url.Error{Op: "Get", URL: "https://127.0.0.1:6443/apis", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, errdefs.ErrUnavailable},
	}
	for _, tt := range tests {
		got := apiError(tt.err, "op")
		if !errors.Is(got, tt.want) || !errors.Is(got, tt.err) {
			t.Errorf("apiError(%v) = %v, want it to wrap %v and the original", tt.err, got, tt.want)
		}
		if strings.Count(got.Error(), tt.want.Error()) > 2 {
			t.Errorf("message repeats the kind: %v", got)
		}
	}
	if got := apiError(apierrors.NewInternalError(errors.New("x")), "op"); errdefs.HTTPStatus(got) != http.StatusInternalServerError {
		t.Errorf("internal error maps to %d", errdefs.HTTPStatus(got))
	}
}
