// Package provider is the contract between the faas-provider HTTP API and
// the runtimes that carry it out: the local process backend and the
// Kubernetes backend implement Backend, and the handlers know nothing else
// about them. It imports neither, so backends do not import the handlers.
package provider

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
)

// Backend is everything the faas-provider API needs from a runtime. The local
// process runtime and the Kubernetes runtime each implement it; handlers know
// nothing else about them. Errors are wrapped errdefs kinds so the handlers can
// pick the status code.
type Backend interface {
	Deploy(ctx context.Context, req types.FunctionDeployment) error
	Update(ctx context.Context, req types.FunctionDeployment) error
	Delete(ctx context.Context, namespace, name string) error
	Function(ctx context.Context, namespace, name string) (types.FunctionStatus, error)
	Functions(ctx context.Context, namespace string) ([]types.FunctionStatus, error)
	Scale(ctx context.Context, namespace, name string, replicas uint64) error
	Namespaces(ctx context.Context) ([]string, error)

	// Secrets lists names only; values never leave the backend.
	Secrets(ctx context.Context, namespace string) ([]types.Secret, error)
	CreateSecret(ctx context.Context, secret types.Secret) error
	UpdateSecret(ctx context.Context, secret types.Secret) error
	DeleteSecret(ctx context.Context, namespace, name string) error

	logs.Requester

	// Acquire picks a ready replica of the function, scaling from zero and
	// waiting (bounded by the backend's own limit and ctx) when none is ready.
	Acquire(ctx context.Context, namespace, name string) (Lease, error)
}

// Lease is one invocation's hold on a replica. The invoke handler sends the
// request to URL through Transport and must call Release exactly once.
type Lease interface {
	URL() *url.URL
	Transport() http.RoundTripper
	Release(Outcome)
}

// Outcome is what the invoke handler observed, for the backend's bookkeeping
// (request counts, the orchestration engine's latency signal).
type Outcome struct {
	StatusCode int
	// Upstream is the function's own time as the agent measured it
	// (X-Duration-Seconds); zero when the agent did not answer.
	Upstream time.Duration
	// Total is the time the provider spent on the call, agent hop included.
	Total time.Duration
	Err   error
}
