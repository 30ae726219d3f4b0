package k8s

import (
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pronghorn-openfaas/pronghorn/coordinator"
)

// TestScaleFromZeroCompareAndSet: 0 becomes 1, anything else stays, a
// conflicting writer wins, and only get and update are used (the upstream
// chart's Role has no patch).
func TestScaleFromZeroCompareAndSet(t *testing.T) {
	tests := []struct {
		name     string
		scaleMin string // the deployment's count, through com.openfaas.scale.min
		zero     bool   // scaled to 0 first
		conflict bool   // the update meets a concurrent writer
		want     int32
	}{
		{"from zero", "", true, false, 1},
		{"already scaled", "4", false, false, 4},
		{"someone else wrote first", "", true, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackend(t)
			deployFn(t, b, "fn", tt.scaleMin)
			if tt.zero {
				if err := b.Scale(ctxT(t), testNS, "fn", 0); err != nil {
					t.Fatal(err)
				}
			}
			if tt.conflict {
				client.PrependReactor("update", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "fn", errors.New("changed"))
				})
			}
			client.ClearActions()
			b.scaleFromZero(ctxT(t), testNS, "fn")
			if got := *getDeployment(t, client, "fn").Spec.Replicas; got != tt.want {
				t.Errorf("replicas = %d, want %d", got, tt.want)
			}
			for _, a := range client.Actions() {
				if a.GetVerb() == "patch" || a.GetSubresource() == "scale" {
					t.Errorf("scale from zero used %s %s/%s", a.GetVerb(), a.GetResource().Resource, a.GetSubresource())
				}
			}
		})
	}
}

// TestEvictRetries: an eviction the API server cannot take now (it is
// restarting) is retried until it goes through; one RBAC forbids is not.
func TestEvictRetries(t *testing.T) {
	tests := []struct {
		name      string
		failures  int
		err       error
		wantGone  bool
		wantTries int
	}{
		{"at once", 0, nil, true, 1},
		{"API server away twice", 2, apierrors.NewServiceUnavailable("restarting"), true, 3},
		{"forbidden", 1, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("no delete")), false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackend(t, functionPod("fn", "fn-a", "10.0.0.1", ready))
			tries := 0
			client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				tries++
				if tries <= tt.failures {
					return true, nil, tt.err
				}
				return false, nil, nil // the tracker deletes it
			})
			start := time.Now()
			b.evict(&podWorker{snap: &coordinator.Worker{}}, testNS, "fn-a")
			_, err := client.CoreV1().Pods(testNS).Get(ctxT(t), "fn-a", metav1.GetOptions{})
			if gone := apierrors.IsNotFound(err); gone != tt.wantGone {
				t.Errorf("pod gone = %v, want %v (%v)", gone, tt.wantGone, err)
			}
			if tries != tt.wantTries {
				t.Errorf("%d delete attempts, want %d", tries, tt.wantTries)
			}
			t.Logf("evict took %s", time.Since(start).Round(time.Millisecond))
		})
	}
}
