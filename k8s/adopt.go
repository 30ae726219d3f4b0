package k8s

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Adoption. Function pods outlive the provider: one restarted (upgraded,
// rescheduled, crashed) while they run finds ready pods whose starts it
// did not plan, and would serve them until they are replaced without ever
// checkpointing them or evicting them by count. So the first time the
// provider sees a ready pod that has no part in the snapshot life cycle
// yet, it asks the pod's agent where it stands (the start plan it
// followed: version, checkpoint request, the request number it started
// at; and the calls it has served) and hands it to the coordinator
// (coordinator.Adopt), which goes on counting from there.
//
// A pod is left alone (served, never checkpointed nor evicted by count),
// with a log line saying why, when the provider cannot vouch for what it
// runs: its agent does not answer or reports no plan (an older agent, or a
// pod that started while no provider answered), it runs without the agent,
// or it runs another version than its function's now (an earlier
// generation, or a secret changed since it started).
//
// Until it is assessed a pod gets no call, for at most adoptPolicy.hold: a
// call it served before would be one the engine never counts, and calls
// served unseen past the planned request would skip the checkpoint. The
// count is read with the pod held and no call in flight, and the worker
// registered before the pod takes calls again, so every call is counted
// exactly once: by the agent before, by Observe after.

// Where a pod's assessment stands (podSlot.adoption).
const (
	adoptNew     int32 = iota // not assessed yet: held back from calls
	adoptRunning              // being adopted
	adoptSettled              // planned here, adopted, or left alone
)

// adoptPolicy bounds adopting a pod.
type adoptPolicy struct {
	hold     time.Duration // longest a new pod is held back from calls while assessed
	drain    time.Duration // longest an adoption waits for calls in flight to finish
	status   time.Duration // one request to the agent
	attempts int           // tries of an adoption that failed for a reason that may pass
	backoff  time.Duration // first pause between tries, doubling
}

func defaultAdoptPolicy() adoptPolicy {
	return adoptPolicy{hold: 2 * time.Second, drain: 2 * time.Second, status: 2 * time.Second, attempts: 4, backoff: 250 * time.Millisecond}
}

// errNotTakingPart settles a pod without a word: it takes no part in
// snapshots (its function's strategy is cold, it is gone, or this provider
// planned it after all).
var errNotTakingPart = errors.New("the pod takes no part in snapshots")

// leftAlone is why a pod is not adopted, for good: trying again cannot
// change it.
type leftAlone struct{ err error }

func (e *leftAlone) Error() string { return e.err.Error() }
func (e *leftAlone) Unwrap() error { return e.err }

func leave(format string, args ...any) error { return &leftAlone{fmt.Errorf(format, args...)} }

// adopts reports whether pods are assessed at all.
func (b *Backend) adopts() bool { return b.cfg.Snapshots != nil && b.cfg.Snapshots.Enabled() }

// assess settles pod p's part in the snapshot life cycle, once: a pod that
// asked this provider for its plan has it already, any other is adopted in
// the background.
func (b *Backend) assess(c *nsCache, s *podSlot, p *corev1.Pod) {
	if !s.adoption.CompareAndSwap(adoptNew, adoptRunning) {
		return
	}
	name := p.Labels[functionLabel]
	if s.snap.Load() != nil {
		b.settle(c, s)
		return
	}
	// The informer's copy usually answers for functions that take no part,
	// so their new pods are not held back behind an API call.
	if dep, err := c.deployments.Deployments(s.namespace).Get(name); err == nil && isFunction(dep, name) {
		if err := b.takesPart(dep); err != nil {
			b.notAdopted(s, name, err, 1)
			b.settle(c, s)
			return
		}
	}
	if !b.goAdopt(func(ctx context.Context) { b.adopt(ctx, c, s, name) }) {
		b.settle(c, s)
		return
	}
	// A slow API server or agent must not keep calls from the pod for
	// long: they then flow, and the adoption holds the pod again only to
	// read its count.
	time.AfterFunc(b.adoptPolicy.hold, func() { b.releaseFirstHold(c, s) })
}

// settle ends a pod's assessment: it takes calls as any pod.
func (b *Backend) settle(c *nsCache, s *podSlot) {
	s.adoption.Store(adoptSettled)
	b.releaseFirstHold(c, s)
}

func (b *Backend) releaseFirstHold(c *nsCache, s *podSlot) {
	s.firstHold.Do(func() {
		s.unhold()
		c.changed.Notify()
	})
}

// goAdopt runs fn on a goroutine Close stops and waits for; once the
// backend is closed it runs nothing and reports false.
func (b *Backend) goAdopt(fn func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.adoptions.Add(1)
	go func() {
		defer b.adoptions.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-b.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		fn(ctx)
	}()
	return true
}

// adopt tries to adopt the pod of s until it is adopted or settled
// otherwise, then lets it take calls.
func (b *Backend) adopt(ctx context.Context, c *nsCache, s *podSlot, name string) {
	defer b.settle(c, s)
	pol := b.adoptPolicy
	for attempt := 1; ; attempt++ {
		err := b.tryAdopt(ctx, c, s, name)
		var left *leftAlone
		if err == nil || errors.Is(err, errNotTakingPart) || errors.As(err, &left) || attempt >= pol.attempts || ctx.Err() != nil {
			b.notAdopted(s, name, err, attempt)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(pol.backoff << (attempt - 1)):
		}
	}
}

// notAdopted logs why the pod of s is left alone, if it is and that says
// anything.
func (b *Backend) notAdopted(s *podSlot, name string, err error, attempts int) {
	var left *leftAlone
	switch {
	case err == nil || errors.Is(err, errNotTakingPart):
	case errors.As(err, &left):
		b.log.Info("pod left alone: it is served but never checkpointed nor evicted by count",
			"function", name+"."+s.namespace, "pod", s.pod, "why", left.err)
	default:
		b.log.Warn("pod left alone: it is served but never checkpointed nor evicted by count",
			"function", name+"."+s.namespace, "pod", s.pod, "attempts", attempts, "err", err)
	}
}

// takesPart reports whether pods of dep may be adopted: errNotTakingPart
// when its strategy takes no snapshots, leftAlone without the agent.
func (b *Backend) takesPart(dep *appsv1.Deployment) error {
	if !b.snapshotsFor(&dep.Spec.Template.Annotations) {
		return errNotTakingPart
	}
	if isAgentless(dep) {
		return leave("it runs without the agent (%s=false)", AgentAnnotation)
	}
	return nil
}

// tryAdopt adopts the pod of s once. A leftAlone error or errNotTakingPart
// is final; any other may pass (the API server or the pod is busy).
func (b *Backend) tryAdopt(ctx context.Context, c *nsCache, s *podSlot, name string) error {
	if s.snap.Load() != nil {
		return errNotTakingPart // its agent restarted and asked this provider for a plan
	}
	dep, err := b.getFunction(ctx, s.namespace, name)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return errNotTakingPart // deleted: its pods go too
	case err != nil:
		return err
	}
	if err := b.takesPart(dep); err != nil {
		return err
	}
	// The informer keeps only what picking needs; the version needs the
	// whole pod.
	pod, err := b.client.CoreV1().Pods(s.namespace).Get(ctx, s.pod, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || (err == nil && pod.UID != s.uid):
		return errNotTakingPart // gone: the informer says so soon
	case err != nil:
		return fmt.Errorf("pod %s: %w", s.pod, err)
	case pod.Annotations[AgentAnnotation] == "false":
		return leave("it runs without the agent (%s=false)", AgentAnnotation)
	case pod.Labels[uidLabel] != dep.Spec.Template.Labels[uidLabel]:
		return leave("%w: it is of an earlier generation of the function, updated since it started", coordinator.ErrOtherVersion)
	}
	in, err := b.versionInputs(ctx, pod)
	if err != nil {
		return fmt.Errorf("version of pod %s: %w", s.pod, err)
	}

	// From here until the worker is registered the pod gets no new call,
	// and its count is read once none is in flight: a call is counted
	// either by the agent before or by Observe after, never both.
	s.hold()
	defer func() {
		s.unhold()
		c.changed.Notify()
	}()
	if !waitIdle(ctx, s, b.adoptPolicy.drain) {
		return fmt.Errorf("calls in flight on pod %s did not finish within %s", s.pod, b.adoptPolicy.drain)
	}
	statusCtx, cancel := context.WithTimeout(ctx, b.adoptPolicy.status)
	st, err := agentStatus(statusCtx, b.agentClient(), pod.Status.PodIP)
	cancel()
	switch {
	case b.podWorkerOf(s.uid) != nil:
		return errNotTakingPart // planned here meanwhile
	case err != nil:
		return leave("its agent does not answer its status: %w", err)
	case !st.Ready:
		return fmt.Errorf("the agent of pod %s reports its function not ready", s.pod)
	case st.Plan == nil:
		return leave("its agent reports no start plan (an agent older than this provider, or the pod started while no provider answered)")
	case st.Plan.Version == "":
		return leave("its start was planned without snapshots")
	}
	f := b.cfg.Snapshots.Function(s.namespace, name)
	snap, evict, err := b.cfg.Snapshots.Adopt(ctx, f, string(s.uid), b.workerSpec(c, dep, pod, name, in), coordinator.Lineage{
		Version: st.Plan.Version, Start: st.Plan.StartLineage, Snapshot: st.Plan.Snapshot,
		Served: int(st.Served), CheckpointAt: st.Plan.CheckpointAt,
	})
	if err != nil {
		return &leftAlone{err}
	}
	pw := &podWorker{snap: snap}
	b.mu.Lock()
	if b.pods[s.uid] != nil {
		b.mu.Unlock()
		b.cfg.Snapshots.Gone(snap)
		return errNotTakingPart // planned here meanwhile: that worker counts
	}
	b.pods[s.uid] = pw
	b.mu.Unlock()
	s.snap.Store(snap)
	// Deleted meanwhile: the informer dropped the slot before it ended the
	// pod's part, which may have been before the worker was registered.
	if cur, ok := c.slots.Load(s.uid); !ok || cur != s {
		b.podGone(s.uid)
		return nil
	}
	b.log.Info("pod adopted", "function", name+"."+s.namespace, "pod", s.pod, "version", st.Plan.Version,
		"lineage", st.Plan.StartLineage+int(st.Served), "served", st.Served, "checkpointAt", st.Plan.CheckpointAt, "dueForEviction", evict)
	if evict {
		go b.evict(pw, s.namespace, s.pod)
	}
	return nil
}

// waitIdle waits until no call is in flight on s, for at most limit.
func waitIdle(ctx context.Context, s *podSlot, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for s.inflight.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
	return true
}
