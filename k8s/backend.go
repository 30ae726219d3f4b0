// Package k8s runs functions on Kubernetes, the way faas-netes does: one
// Deployment and one ClusterIP Service per function in its namespace
// (openfaas-fn by default). The difference is the worker: a function pod
// runs the pronghorn agent as its entrypoint, copied in by an init container
// from the provider's own image, and the provider sends invocations straight
// to a ready pod rather than through the Service, so it knows which worker
// served which call. A function whose fprocess the provider cannot see runs
// its image's own entrypoint instead, as under faas-netes (agentless.go).
package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openfaas/faas-provider/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/funcspec"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// Config tunes the Kubernetes backend.
type Config struct {
	// DefaultNamespace is where functions live when a request names no
	// namespace; it is always allowed. Default openfaas-fn.
	DefaultNamespace string
	// AgentImage is the provider's own image: an init container of every
	// function pod copies the pronghorn binary out of it. Required.
	AgentImage string
	// ImagePullPolicy of the function container: Always (faas-netes'
	// default), IfNotPresent or Never.
	ImagePullPolicy string
	// ScaleFromZeroTimeout bounds how long an invocation waits for a ready
	// pod. Default 30s.
	ScaleFromZeroTimeout time.Duration
	// MaxReplicas is the provider-wide replica ceiling; a function's
	// com.openfaas.scale.max may only lower it. 0 means
	// funcspec.DefaultMaxReplicas; at most what Deployment.spec.replicas
	// (an int32) holds.
	MaxReplicas uint64
	// ProviderURL is how agents reach the provider (snapshot coordination);
	// passed to every pod as PRONGHORN_PROVIDER_URL when set.
	ProviderURL string
	// Snapshots, when set and enabled, plans pods' starts and checkpoints
	// them; nil or disabled, every pod starts cold.
	Snapshots *coordinator.Coordinator
	Logger    *slog.Logger

	// HTTPProbe probes functions without the agent with an HTTP GET of
	// /_/health on port 8080 rather than `cat /tmp/.lock`, as faas-netes'
	// http_probe does (false in faas-netes' code, true in its chart).
	HTTPProbe bool
	// ReadinessProbe and LivenessProbe time the function container's
	// probes, as faas-netes' readiness_probe_* and liveness_probe_*
	// settings; nil means DefaultProbeConfig, faas-netes CE's values.
	ReadinessProbe, LivenessProbe *ProbeConfig
	// SetNonRootUser runs function containers as user 12000, as faas-netes'
	// set_nonroot_user does; except those that snapshot, which CRIU needs
	// to run as root (see makeDeployment).
	SetNonRootUser bool
	// ClusterRole serves, besides DefaultNamespace, every namespace
	// annotated openfaas: "1" (faas-netes' cluster_role, an OpenFaaS Pro
	// feature). Off, only DefaultNamespace is served and requests for any
	// other get faas-netes CE's answer, a 400.
	ClusterRole bool
}

func (c *Config) setDefaults() error {
	if c.AgentImage == "" {
		return fmt.Errorf("kubernetes backend: no agent image: function pods copy the agent out of the provider's image, so its name is required")
	}
	c.DefaultNamespace = funcspec.Namespace("", c.DefaultNamespace)
	if c.MaxReplicas == 0 {
		c.MaxReplicas = funcspec.DefaultMaxReplicas
	}
	if c.MaxReplicas > maxInt32 {
		return fmt.Errorf("kubernetes backend: max replicas %d is more than a Deployment holds (%d)", c.MaxReplicas, maxInt32)
	}
	switch corev1.PullPolicy(c.ImagePullPolicy) {
	case "":
		c.ImagePullPolicy = string(corev1.PullAlways)
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("kubernetes backend: image pull policy %q is not Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	if c.ScaleFromZeroTimeout <= 0 {
		c.ScaleFromZeroTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	// Copies, so a caller changing its ProbeConfig later changes nothing here.
	for _, p := range []struct {
		which string
		cfg   **ProbeConfig
	}{{"readiness", &c.ReadinessProbe}, {"liveness", &c.LivenessProbe}} {
		v := DefaultProbeConfig()
		if *p.cfg != nil {
			v = **p.cfg
		}
		if err := v.check(p.which); err != nil {
			return err
		}
		*p.cfg = &v
	}
	return nil
}

// Backend implements provider.Backend with client-go. Kubernetes holds all
// durable state; the backend keeps only invocation counts, round-robin
// positions and per-namespace pod caches in memory.
type Backend struct {
	client    kubernetes.Interface
	cfg       Config
	log       *slog.Logger
	transport *http.Transport

	// adoptPolicy bounds taking over pods a previous provider planned.
	adoptPolicy adoptPolicy

	// rootWarning says once that set_nonroot_user spares functions that
	// snapshot.
	rootWarning sync.Once

	mu        sync.Mutex
	functions map[string]*fnState // namespace/name: invocation counts, round robin
	caches    map[string]*nsCache // namespace: pod and deployment informers
	pods      map[k8stypes.UID]*podWorker
	// hidden holds the annotated namespaces already reported as left out
	// of Namespaces for want of RBAC, so each is logged once, not at every
	// metrics scrape.
	hidden map[string]bool
	closed bool

	// adoptions tracks the goroutines adopting pods (adopt.go), which
	// Close ends (stop) and waits for, so none of them uses the
	// coordinator after the provider closes it.
	adoptions sync.WaitGroup
	stop      chan struct{}
}

var _ provider.Backend = (*Backend)(nil)

// fnState is what the provider remembers about a function between calls.
type fnState struct {
	invocations atomic.Int64
	rr          atomic.Uint64
}

// New returns a backend working through client. Nothing is contacted until
// the first request; Close stops the informers started since.
func New(client kubernetes.Interface, cfg Config) (*Backend, error) {
	if client == nil {
		return nil, fmt.Errorf("kubernetes backend: no client")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	// Logged here because only the backend knows them resolved.
	cfg.Logger.Info("kubernetes backend", "function_namespace", cfg.DefaultNamespace, "cluster_role", cfg.ClusterRole,
		"http_probe", cfg.HTTPProbe, "readiness_probe", *cfg.ReadinessProbe, "liveness_probe", *cfg.LivenessProbe,
		"set_nonroot_user", cfg.SetNonRootUser, "image_pull_policy", cfg.ImagePullPolicy)
	return &Backend{
		client: client, cfg: cfg, log: cfg.Logger, adoptPolicy: defaultAdoptPolicy(),
		// One transport for every pod: connections to a pod's agent are
		// reused across invocations. Compression is off because the
		// provider only relays bytes and must not re-encode a function's
		// response.
		transport: &http.Transport{
			Proxy: nil,
			// A pod that went away between its last readiness report and
			// this call should fail fast, not after the kernel's TCP timeout.
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		functions: map[string]*fnState{},
		caches:    map[string]*nsCache{},
		pods:      map[k8stypes.UID]*podWorker{},
		hidden:    map[string]bool{},
		stop:      make(chan struct{}),
	}, nil
}

// Close stops the informers and any adoption in progress, and drops idle
// connections to agents. Functions keep running: they belong to
// Kubernetes, not to the provider.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		close(b.stop)
	}
	b.closed = true
	caches := b.caches
	b.caches = map[string]*nsCache{}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for _, c := range caches {
			c.stop()
		}
		b.adoptions.Wait()
		close(done)
	}()
	b.transport.CloseIdleConnections()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop informers and adoptions: %w", ctx.Err())
	}
}

func (b *Backend) namespace(ns string) string {
	return funcspec.Namespace(ns, b.cfg.DefaultNamespace)
}

func (b *Backend) state(namespace, name string) *fnState {
	key := namespace + "/" + name
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.functions[key]
	if s == nil {
		s = &fnState{}
		b.functions[key] = s
	}
	return s
}

func (b *Backend) forget(namespace, name string) {
	b.mu.Lock()
	delete(b.functions, namespace+"/"+name)
	b.mu.Unlock()
}

func (b *Backend) invocations(namespace, name string) float64 {
	b.mu.Lock()
	s := b.functions[namespace+"/"+name]
	b.mu.Unlock()
	if s == nil {
		return 0
	}
	return float64(s.invocations.Load())
}

// Deploy creates the function's Deployment, then its Service. A Service that
// cannot be created takes the Deployment with it, so a failed deploy leaves
// nothing behind.
func (b *Backend) Deploy(ctx context.Context, req types.FunctionDeployment) error {
	req.Namespace = b.namespace(req.Namespace)
	if req.Service == "" {
		return fmt.Errorf("service name is required: %w", errdefs.ErrInvalid)
	}
	if err := b.served(ctx, req.Namespace); err != nil {
		return err
	}
	secrets, err := b.functionSecrets(ctx, req.Namespace, req.Secrets)
	if err != nil {
		return err
	}
	dep, err := b.makeDeployment(req, secrets)
	if err != nil {
		return err
	}
	display := req.Service + "." + req.Namespace
	created, err := b.client.AppsV1().Deployments(req.Namespace).Create(ctx, dep, metav1.CreateOptions{})
	if err != nil {
		return apiError(err, "create deployment of function %s", display)
	}
	if _, err := b.client.CoreV1().Services(req.Namespace).Create(ctx, makeService(req), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		// A Service left over from a half-finished delete is fine to adopt:
		// its selector is the same faas_function label.
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := b.client.AppsV1().Deployments(req.Namespace).Delete(cleanupCtx, created.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &created.UID},
		}); derr != nil && !apierrors.IsNotFound(derr) {
			b.log.Error("remove deployment after failed service create", "function", display, "err", derr)
		}
		return apiError(err, "create service of function %s", display)
	}
	b.log.Info("function deployed", "function", display, "image", req.Image, "replicas", *dep.Spec.Replicas, "agent", !isAgentless(dep))
	return nil
}

// Update replaces the function's pod template (a rolling update: new pods
// start before old ones go, maxUnavailable 0) and its labels and
// annotations, as faas-netes' update does:
//
//   - the pod template gets a new uid label every time, so every update
//     rolls the pods, and faas-cli up of an image rebuilt under the same tag
//     takes effect (the pull policy pulls it again);
//   - a com.openfaas.scale.min that is a positive integer sets the replica
//     count; otherwise the count stays as it is. Either way it is kept
//     within the function's new maximum;
//   - labels and annotations the request no longer has go, from the pod
//     template, the Deployment and the Service; what others (the Deployment
//     controller, kubectl, GitOps tools) put on those objects stays.
//
// It reads, modifies and writes the Deployment rather than sending a patch:
// a merge patch cannot remove an env var or a secret the new request no
// longer has, and the read-modify-write retries on conflict.
func (b *Backend) Update(ctx context.Context, req types.FunctionDeployment) error {
	req.Namespace = b.namespace(req.Namespace)
	if req.Service == "" {
		return fmt.Errorf("service name is required: %w", errdefs.ErrInvalid)
	}
	if err := b.served(ctx, req.Namespace); err != nil {
		return err
	}
	display := req.Service + "." + req.Namespace
	secrets, err := b.functionSecrets(ctx, req.Namespace, req.Secrets)
	if err != nil {
		return err
	}
	want, err := b.makeDeployment(req, secrets)
	if err != nil {
		return err
	}
	var reqLabels map[string]string
	if req.Labels != nil {
		reqLabels = *req.Labels
	}
	limit, err := funcspec.MaxReplicas(reqLabels, b.cfg.MaxReplicas)
	if err != nil {
		return err // Validate, in makeDeployment, has refused this already
	}
	var previous map[string]string // the annotations the last deploy or update set
	deployments := b.client.AppsV1().Deployments(req.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := b.getFunction(ctx, req.Namespace, req.Service)
		if err != nil {
			return err
		}
		previous = cur.Spec.Template.Annotations
		tmpl := *want.Spec.Template.DeepCopy()
		// As faas-netes, the request's labels are set after uid, so a
		// request that names a uid label itself keeps its value.
		if _, own := reqLabels[uidLabel]; !own {
			tmpl.Labels[uidLabel] = newUID(cur.Spec.Template.Labels[uidLabel])
		}
		cur.Labels = replaceOwned(cur.Labels, nil, want.Labels)
		cur.Annotations = replaceOwned(cur.Annotations, previous, want.Annotations)
		cur.Spec.Template = tmpl
		cur.Spec.Strategy = want.Spec.Strategy
		replicas := int32(1)
		switch {
		case scaleMinSet(reqLabels):
			replicas = *want.Spec.Replicas
		case cur.Spec.Replicas != nil:
			replicas = *cur.Spec.Replicas
		}
		cur.Spec.Replicas = ptr(min(replicas, int32(limit)))
		_, err = deployments.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return apiError(err, "update function %s", display)
	}
	// The Service is rebuilt as well, so annotations on it follow the
	// request; a missing one (deleted by hand) is recreated.
	if err := b.syncService(ctx, req, previous); err != nil {
		return err
	}
	b.log.Info("function updated", "function", display, "image", req.Image, "agent", !isAgentless(want))
	return nil
}

// scaleMinSet reports whether labels carry a com.openfaas.scale.min that
// faas-netes applies on update: a positive integer.
func scaleMinSet(labels map[string]string) bool {
	n, err := strconv.Atoi(labels[scaleMinLabel])
	return err == nil && n > 0
}

// newUID is a value for the uid label that differs from old. faas-netes
// uses the clock's nanoseconds within the second, which may repeat; the
// whole clock in nanoseconds, bumped on a tie, never does.
func newUID(old string) string {
	n := time.Now().UnixNano()
	if v := strconv.FormatInt(n, 10); v != old {
		return v
	}
	return strconv.FormatInt(n+1, 10)
}

// syncService brings the Service's annotations, selector and ports in line
// with req; previous are the annotations the provider set before, which go
// when req no longer has them.
func (b *Backend) syncService(ctx context.Context, req types.FunctionDeployment, previous map[string]string) error {
	services := b.client.CoreV1().Services(req.Namespace)
	want := makeService(req)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := services.Get(ctx, req.Service, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = services.Create(ctx, want, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Labels = replaceOwned(cur.Labels, nil, want.Labels)
		cur.Annotations = replaceOwned(cur.Annotations, previous, want.Annotations)
		cur.Spec.Selector = want.Spec.Selector
		cur.Spec.Ports = want.Spec.Ports
		_, err = services.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return apiError(err, "update service of function %s.%s", req.Service, req.Namespace)
	}
	return nil
}

// replaceOwned returns cur without the keys of previous (what the provider
// set last time) and with ours set: a key the request dropped goes, while
// keys others put on the object (the Deployment controller's revision,
// kubectl's, a GitOps tool's) stay. faas-netes replaces the Deployment's
// annotations whole, which drops those too.
func replaceOwned(cur, previous, ours map[string]string) map[string]string {
	out := make(map[string]string, len(cur)+len(ours))
	for k, v := range cur {
		if _, owned := previous[k]; !owned {
			out[k] = v
		}
	}
	for k, v := range ours {
		out[k] = v
	}
	return out
}

// Delete removes the Deployment (foreground: it disappears once its pods
// are gone, as faas-netes does) and the Service.
func (b *Backend) Delete(ctx context.Context, namespace, name string) error {
	namespace = b.namespace(namespace)
	if err := b.served(ctx, namespace); err != nil {
		return err
	}
	display := name + "." + namespace
	dep, err := b.getFunction(ctx, namespace, name)
	if err != nil {
		return err
	}
	policy := metav1.DeletePropagationForeground
	err = b.client.AppsV1().Deployments(namespace).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: &policy,
		// Only the Deployment just checked to be a function, never one
		// created under the same name since.
		Preconditions: &metav1.Preconditions{UID: &dep.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, "delete deployment of function %s", display)
	}
	err = b.client.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, "delete service of function %s", display)
	}
	b.forget(namespace, name)
	if b.cfg.Snapshots != nil {
		b.cfg.Snapshots.Remove(context.WithoutCancel(ctx), b.cfg.Snapshots.Function(namespace, name))
	}
	b.log.Info("function deleted", "function", display)
	return nil
}

// Scale sets the Deployment's replicas with a get and an update, as
// faas-netes does: the upstream openfaas chart's Role grants deployments
// get and update but neither patch nor deployments/scale. The count is
// bounded by the function's com.openfaas.scale.max, kept with the request's
// other labels on the pod template, and by the provider's maximum.
func (b *Backend) Scale(ctx context.Context, namespace, name string, replicas uint64) error {
	namespace = b.namespace(namespace)
	if err := b.served(ctx, namespace); err != nil {
		return err
	}
	dep, err := b.getFunction(ctx, namespace, name)
	if err != nil {
		return err
	}
	if err := funcspec.CheckReplicas(replicas, dep.Spec.Template.Labels, b.cfg.MaxReplicas); err != nil {
		return fmt.Errorf("scale function %s.%s: %w", name, namespace, err)
	}
	n := int32(replicas) // CheckReplicas bounded it by an int32 maximum
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if dep.Spec.Replicas != nil && *dep.Spec.Replicas == n {
			return nil
		}
		dep.Spec.Replicas = &n
		_, err := b.client.AppsV1().Deployments(namespace).Update(ctx, dep, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, gerr := b.getFunction(ctx, namespace, name); gerr == nil {
				dep = fresh
			}
		}
		return err
	})
	if err != nil {
		return apiError(err, "scale function %s.%s", name, namespace)
	}
	b.log.Info("function scaled", "function", name+"."+namespace, "replicas", replicas)
	return nil
}

// maxInt32 is what fits Deployment.spec.replicas.
const maxInt32 = 1<<31 - 1

// Function reports one function's status from its Deployment.
func (b *Backend) Function(ctx context.Context, namespace, name string) (types.FunctionStatus, error) {
	namespace = b.namespace(namespace)
	if err := b.served(ctx, namespace); err != nil {
		return types.FunctionStatus{}, err
	}
	dep, err := b.getFunction(ctx, namespace, name)
	if err != nil {
		return types.FunctionStatus{}, err
	}
	return b.status(dep), nil
}

// Functions lists the functions in namespace: Deployments carrying the
// faas_function label.
func (b *Backend) Functions(ctx context.Context, namespace string) ([]types.FunctionStatus, error) {
	namespace = b.namespace(namespace)
	if err := b.served(ctx, namespace); err != nil {
		return nil, err
	}
	list, err := b.client.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{LabelSelector: functionLabel})
	if err != nil {
		return nil, apiError(err, "list functions in %s", namespace)
	}
	out := make([]types.FunctionStatus, 0, len(list.Items))
	for i := range list.Items {
		d := &list.Items[i]
		if d.DeletionTimestamp != nil {
			continue
		}
		out = append(out, b.status(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// getFunction reads the function's Deployment. A Deployment without the
// faas_function label is not a function, and one being deleted is already
// gone as far as the API is concerned.
func (b *Backend) getFunction(ctx context.Context, namespace, name string) (*appsv1.Deployment, error) {
	dep, err := b.client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, apiError(err, "function %s.%s", name, namespace)
	}
	if !isFunction(dep, name) {
		return nil, fmt.Errorf("function %s.%s: %w", name, namespace, errdefs.ErrNotFound)
	}
	return dep, nil
}

func isFunction(d *appsv1.Deployment, name string) bool {
	return d.Labels[functionLabel] == name && d.DeletionTimestamp == nil
}

// isTransportError reports an API call that got no answer: client-go
// returns the HTTP client's *url.Error (a net.Error) for a refused or
// broken connection, never an API status.
func isTransportError(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// apiError wraps a Kubernetes API error with the errdefs kind the handlers
// map to a status code, keeping the API's own message.
func apiError(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	var kind error
	switch {
	case errors.Is(err, errdefs.ErrNotFound), errors.Is(err, errdefs.ErrInvalid),
		errors.Is(err, errdefs.ErrAlreadyExists), errors.Is(err, errdefs.ErrUnavailable):
		return fmt.Errorf("%s: %w", what, err)
	case apierrors.IsNotFound(err):
		kind = errdefs.ErrNotFound
	case apierrors.IsAlreadyExists(err):
		kind = errdefs.ErrAlreadyExists
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		kind = errdefs.ErrInvalid
	case apierrors.IsForbidden(err):
		// The provider has no RBAC for this (a namespace without its Role,
		// or a Role short of a verb): the caller's view is that there is
		// no such function, not that the provider broke. errdefs has no
		// kind for a 403, so it is a 404 whose message keeps the API's
		// "forbidden" reason.
		kind = errdefs.ErrNotFound
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsConflict(err), isTransportError(err):
		// Conflict here means retries ran out against concurrent writers;
		// a transport error, that the API server did not answer (it is
		// restarting, or unreachable): worth trying again, not the
		// client's fault, and not the provider's either.
		kind = errdefs.ErrUnavailable
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, kind, err)
}
