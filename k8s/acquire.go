package k8s

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// Invocations pick pods from informer caches, not from the API server: an
// API round trip per call would cost more than the call. Each namespace
// that has been invoked gets one informer on function pods and one on
// function Deployments (both selected by the faas_function label), started
// on first use and stopped by Close.
//
// Pods rather than EndpointSlices: the provider needs the pod (its name for
// bookkeeping, its IP for the agent's port) and a pod's Ready condition is
// what the endpoints controller derives readiness from; pods being deleted
// are skipped just as the controller marks their endpoints not ready.

// byFunction indexes pods by namespace/faas_function.
const byFunction = "function"

type nsCache struct {
	factory     informers.SharedInformerFactory
	pods        cache.SharedIndexInformer
	deployments appslisters.DeploymentLister
	synced      []cache.InformerSynced
	stopCh      chan struct{}

	// changed wakes invocations that wait for a ready pod whenever a pod
	// changes.
	changed provider.Signal

	// slots holds per-pod state (URL, calls in flight) by pod UID; entries
	// go when the pod does.
	slots sync.Map

	// assess, set when snapshots are on, settles a pod's part in the
	// snapshot life cycle the first time the provider sees it ready:
	// planned here, adopted, or left alone (adopt.go).
	assess func(s *podSlot, p *corev1.Pod)
}

// podSlot is the provider's view of one pod's agent.
type podSlot struct {
	url       *url.URL
	uid       k8stypes.UID
	namespace string
	pod       string
	inflight  atomic.Int64
	// snap is the pod's part in the snapshot life cycle, once it asked
	// for its plan or was adopted.
	snap atomic.Pointer[coordinator.Worker]

	// adoption is how far the provider is with settling the pod's part in
	// the snapshot life cycle (adoptNew, adoptRunning, adoptSettled).
	adoption atomic.Int32
	// While holds > 0 the pod gets no new call: a pod not yet assessed
	// (for at most adoptPolicy.hold), and one whose adoption reads its count
	// of calls. holdMu makes a pick's check of holds and its raising of
	// inflight one step, so an adoption that holds the pod and then sees
	// no call in flight knows that the count it reads is final.
	holdMu  sync.Mutex
	holds   int
	holding atomic.Bool // holds > 0, for picks that only compare pods
	// firstHold releases, once, the hold a pod starts with.
	firstHold sync.Once
}

// dumping reports whether the pod is about to be, or being, dumped: a call
// it served now would end up in a snapshot labelled with an earlier
// request number.
func (s *podSlot) dumping() bool {
	snap := s.snap.Load()
	return snap != nil && snap.Dumping()
}

// held reports whether the pod takes no new call now.
func (s *podSlot) held() bool { return s.holding.Load() || s.dumping() }

func (s *podSlot) hold() {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	s.holds++
	s.holding.Store(true)
}

func (s *podSlot) unhold() {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	s.holds--
	s.holding.Store(s.holds > 0)
}

// enter raises the pod's count of calls in flight, unless it is held.
func (s *podSlot) enter() bool {
	if s.adoption.Load() == adoptSettled {
		// Settled pods are never held again: no lock on the common path.
		s.inflight.Add(1)
		return true
	}
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	if s.holds > 0 {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (c *nsCache) stop() {
	close(c.stopCh)
	c.factory.Shutdown()
}

// cacheFor returns namespace's caches, starting them on first use.
func (b *Backend) cacheFor(namespace string) (*nsCache, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("provider is shutting down: %w", errdefs.ErrUnavailable)
	}
	if c := b.caches[namespace]; c != nil {
		return c, nil
	}
	factory := informers.NewSharedInformerFactoryWithOptions(b.client, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = functionLabel }))
	c := &nsCache{factory: factory, stopCh: make(chan struct{})}
	c.pods = factory.Core().V1().Pods().Informer()
	// Only what picking needs is kept: whole pod specs times many pods
	// would otherwise sit in the provider's memory for nothing.
	if err := c.pods.SetTransform(trimPod); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if err := c.pods.AddIndexers(cache.Indexers{byFunction: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, nil
		}
		return []string{p.Labels[functionLabel]}, nil
	}}); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if b.adopts() {
		c.assess = func(s *podSlot, p *corev1.Pod) { b.assess(c, s, p) }
	}
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			// A restarted provider's first listing: ready pods it did not
			// plan are assessed before a call needs them.
			if p, ok := obj.(*corev1.Pod); ok && c.assess != nil && podReady(p) {
				c.assess(c.slot(p), p)
			}
			c.changed.Notify()
		},
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*corev1.Pod); ok && b.cfg.Snapshots != nil && podReady(p) {
				b.learnRestore(p)
				if c.assess != nil {
					c.assess(c.slot(p), p)
				}
			}
			c.changed.Notify()
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				c.slots.Delete(p.UID)
				if b.cfg.Snapshots != nil {
					b.podGone(p.UID)
				}
			}
			c.changed.Notify()
		},
	}); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	depInformer := factory.Apps().V1().Deployments()
	c.deployments = depInformer.Lister()
	c.synced = []cache.InformerSynced{c.pods.HasSynced, depInformer.Informer().HasSynced}
	factory.Start(c.stopCh)
	b.caches[namespace] = c
	return c, nil
}

// trimPod keeps the fields pick and podReady read. Nothing else reads this
// informer's cache (logs list pods from the API server).
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, Conditions: p.Status.Conditions},
	}, nil
}

// Acquire picks a ready pod of the function, round robin with a preference
// for pods with no call in flight (as the local backend does). With none
// ready it scales a function at zero to one replica and waits, bounded by
// ScaleFromZeroTimeout and ctx.
func (b *Backend) Acquire(ctx context.Context, namespace, name string) (provider.Lease, error) {
	namespace = b.namespace(namespace)
	c, dep, err := b.lookup(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	st := b.state(namespace, name)
	if c.hasSynced() {
		if s := c.pick(st, namespace, name); s != nil {
			return b.lease(st, s), nil
		}
	}

	waitCtx, cancel := context.WithTimeout(ctx, b.cfg.ScaleFromZeroTimeout)
	defer cancel()
	// Scale first, wait for the cache after: a new pod takes seconds, the
	// first listing of a namespace milliseconds.
	if dep.Spec.Replicas != nil && *dep.Spec.Replicas == 0 {
		b.scaleFromZero(waitCtx, namespace, name)
	}
	unavailable := func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("no ready replica of %s.%s within %s: %w", name, namespace, b.cfg.ScaleFromZeroTimeout, errdefs.ErrUnavailable)
	}
	if !c.waitSynced(waitCtx) {
		return nil, unavailable()
	}
	s, err := provider.WaitFor(waitCtx, &c.changed, func() (*podSlot, bool, error) {
		s := c.pick(st, namespace, name)
		return s, s != nil, nil
	})
	if err != nil {
		return nil, unavailable()
	}
	return b.lease(st, s), nil
}

func (c *nsCache) hasSynced() bool {
	for _, synced := range c.synced {
		if !synced() {
			return false
		}
	}
	return true
}

// waitSynced waits for the namespace's first listing. It polls rather
// than using cache.WaitForCacheSync, which checks only every 100ms and logs
// each wait through klog.
func (c *nsCache) waitSynced(ctx context.Context) bool {
	if c.hasSynced() {
		return true
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if c.hasSynced() {
				return true
			}
		case <-ctx.Done():
			return false
		}
	}
}

// lookup finds the function's Deployment, from the cache when possible. A
// cache miss asks the API server, since a function deployed a moment ago
// may not have reached the cache yet; and a namespace's informers start
// only once it is served and a function has been found there, so
// invocations of made-up names cannot make the provider watch arbitrary
// namespaces.
func (b *Backend) lookup(ctx context.Context, namespace, name string) (*nsCache, *appsv1.Deployment, error) {
	b.mu.Lock()
	c := b.caches[namespace]
	b.mu.Unlock()
	if c != nil && c.hasSynced() {
		dep, err := c.deployments.Deployments(namespace).Get(name)
		if err == nil && isFunction(dep, name) {
			return c, dep, nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, nil, apiError(err, "function %s.%s", name, namespace)
		}
	}
	if c == nil {
		if err := b.served(ctx, namespace); err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				return nil, nil, err
			}
			// Not the API's 400: to a caller there is no such function,
			// and a 404 is what the invoke handler records no metric
			// series for, so invented namespaces cannot grow /metrics.
			return nil, nil, fmt.Errorf("namespace %s is not served by this provider: %w", namespace, errdefs.ErrNotFound)
		}
	}
	dep, err := b.getFunction(ctx, namespace, name)
	if err != nil {
		return nil, nil, err
	}
	if c == nil {
		if c, err = b.cacheFor(namespace); err != nil {
			return nil, nil, err
		}
	}
	return c, dep, nil
}

// scaleFromZero sets replicas 0 → 1 as one compare-and-set, so an
// invocation racing a scale-up to five, or another invocation, never scales
// the function down: it reads the Deployment and updates it only if it
// still has 0 replicas, and the update carries the resourceVersion read, so
// the API server refuses it (a conflict) if anyone changed the Deployment in
// between. It is a get and an update rather than a JSON patch because the
// upstream openfaas chart's Role grants deployments get and update but not
// patch. A refused update means someone else scaled it; waiting for a pod
// is right either way.
func (b *Backend) scaleFromZero(ctx context.Context, namespace, name string) {
	deployments := b.client.AppsV1().Deployments(namespace)
	dep, err := deployments.Get(ctx, name, metav1.GetOptions{})
	if err != nil || !isFunction(dep, name) || dep.Spec.Replicas == nil || *dep.Spec.Replicas != 0 {
		b.log.Debug("scale from zero not needed or not possible", "function", name+"."+namespace, "err", err)
		return
	}
	dep.Spec.Replicas = ptr(int32(1))
	if _, err := deployments.Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		b.log.Debug("scale from zero not applied", "function", name+"."+namespace, "err", err)
		return
	}
	b.log.Info("function scaled from zero", "function", name+"."+namespace)
}

func (b *Backend) lease(st *fnState, s *podSlot) *lease {
	return &lease{b: b, st: st, slot: s, transport: b.transport}
}

// pick returns a ready pod with its in-flight count already raised, or nil
// when there is none.
func (c *nsCache) pick(st *fnState, namespace, name string) *podSlot {
	objs, err := c.pods.GetIndexer().ByIndex(byFunction, name)
	if err != nil || len(objs) == 0 {
		return nil
	}
	ready := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p := o.(*corev1.Pod); p.Namespace == namespace && podReady(p) {
			ready = append(ready, p)
		}
	}
	n := len(ready)
	if n == 0 {
		return nil
	}
	// The indexer's order is arbitrary; round robin needs a stable one.
	sort.Slice(ready, func(i, j int) bool { return ready[i].Name < ready[j].Name })
	slots := make([]*podSlot, n)
	for i, p := range ready {
		slots[i] = c.slot(p)
		if c.assess != nil && slots[i].adoption.Load() == adoptNew {
			c.assess(slots[i], p)
		}
	}
	best, _ := provider.PickLeastBusy(slots, &st.rr, func(s *podSlot) int64 {
		if s.held() {
			return math.MaxInt64
		}
		return s.inflight.Load()
	})
	if best.held() || !best.enter() {
		return nil // every ready pod is being dumped or assessed: wait for one
	}
	return best
}

func (c *nsCache) slot(p *corev1.Pod) *podSlot {
	if s, ok := c.slots.Load(p.UID); ok {
		return s.(*podSlot)
	}
	s := &podSlot{
		url: &url.URL{Scheme: "http", Host: net.JoinHostPort(p.Status.PodIP, strconv.Itoa(InvokePort))},
		uid: p.UID, namespace: p.Namespace, pod: p.Name,
	}
	if c.assess != nil {
		// A call it served before the provider knew its part in snapshots
		// would be one the engine never counts: hold it until assessed.
		s.holds = 1
		s.holding.Store(true)
	} else {
		s.adoption.Store(adoptSettled)
	}
	actual, _ := c.slots.LoadOrStore(p.UID, s)
	return actual.(*podSlot)
}

// podReady is the endpoints controller's rule: Ready condition true, an IP,
// and not being deleted.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

type lease struct {
	b         *Backend
	st        *fnState
	slot      *podSlot
	transport http.RoundTripper
	released  atomic.Bool
}

func (l *lease) URL() *url.URL                { return l.slot.url }
func (l *lease) Transport() http.RoundTripper { return l.transport }

func (l *lease) Release(o provider.Outcome) {
	if !l.released.CompareAndSwap(false, true) {
		return
	}
	l.st.invocations.Add(1)
	latency := o.Upstream
	if latency <= 0 {
		latency = o.Total
	}
	l.b.observe(l.slot.uid, l.slot.namespace, l.slot.pod, coordinator.Outcome{Latency: latency, Failed: o.Err != nil || o.StatusCode >= 500})
	// Only now: an adoption that sees no call in flight must know that
	// every call before has been observed (or found no worker to count).
	l.slot.inflight.Add(-1)
}
