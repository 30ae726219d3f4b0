package k8s

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// Snapshots in pods. A function pod's agent asks the provider for its
// start plan at PlanPath, proving which pod it is with a projected service
// account token bound to the pod and issued for TokenAudience, which the
// API server checks (TokenReview). The plan carries a presigned URL for
// exactly the snapshot to restore; a checkpoint hands the agent a
// presigned URL for exactly the object to write. Pods never hold store
// credentials.

// TokenAudience is the audience of the token a pod presents; a token for
// any other audience, the API server's included, is refused.
const TokenAudience = "pronghorn"

// PlanPath is where agents ask for their start plan.
const PlanPath = agent.PlanPath

const (
	tokenVolume = "pronghorn-token"
	tokenDir    = "/var/run/secrets/pronghorn"
	// tokenTTL is as short as the API server allows: the token is used once,
	// at start.
	tokenTTL = 600

	envTokenFile    = "PRONGHORN_TOKEN_FILE"
	envPodName      = "PRONGHORN_POD_NAME"
	envPodNamespace = "PRONGHORN_POD_NAMESPACE"

	podNameExtra = "authentication.kubernetes.io/pod-name"
	podUIDExtra  = "authentication.kubernetes.io/pod-uid"
)

// maxPlanRequest bounds an agent's plan request body.
const maxPlanRequest = 4 << 10

// podWorker is a pod that asked for its plan: its part in the snapshot
// life cycle.
type podWorker struct {
	snap       *coordinator.Worker
	restoreKey string // the snapshot it was told to restore, "" if cold
	reported   sync.Once
}

// snapshotsFor reports whether a function with these annotations takes part
// in snapshots, and so needs a privileged pod and a token.
func (b *Backend) snapshotsFor(annotations *map[string]string) bool {
	if b.cfg.Snapshots == nil || !b.cfg.Snapshots.Enabled() {
		return false
	}
	var a map[string]string
	if annotations != nil {
		a = *annotations
	}
	cfg, err := b.cfg.Snapshots.EngineConfig(a)
	return err == nil && cfg.Strategy != orchestrator.StrategyCold
}

// snapshotPod gives the function container what restoring and reaching the
// provider need. Restore needs a privileged container on this kind of
// kernel: unprivileged, CRIU cannot write ns_last_pid (read-only /proc/sys)
// nor set the time namespace's monotonic offset.
func snapshotPod(fn *corev1.Container, volumes []corev1.Volume) []corev1.Volume {
	privileged := true
	fn.SecurityContext.Privileged = &privileged
	fn.Env = append(fn.Env,
		corev1.EnvVar{Name: envTokenFile, Value: tokenDir + "/token"},
		corev1.EnvVar{Name: envPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		corev1.EnvVar{Name: envPodNamespace, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
	)
	sort.Slice(fn.Env, func(i, j int) bool { return fn.Env[i].Name < fn.Env[j].Name })
	fn.VolumeMounts = append(fn.VolumeMounts, corev1.VolumeMount{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true})
	ttl := int64(tokenTTL)
	return append(volumes, corev1.Volume{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: TokenAudience, ExpirationSeconds: &ttl, Path: "token",
		}}},
	}}})
}

// AgentHandler serves agents' start plans. It is not behind basic auth:
// each pod proves who it is with its own token.
func (b *Backend) AgentHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxPlanRequest)); err != nil {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		plan, status, err := b.plan(r.Context(), strings.TrimSpace(token))
		if err != nil {
			if status >= 500 {
				b.log.Error("agent plan", "err", err)
			}
			http.Error(w, err.Error(), status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(plan)
	})
}

// plan authenticates the pod behind token and plans its start.
func (b *Backend) plan(ctx context.Context, token string) (agent.StartPlan, int, error) {
	review, err := b.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{TokenAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return agent.StartPlan{}, http.StatusServiceUnavailable, fmt.Errorf("token review: %w", err)
	}
	st := review.Status
	podNames, podUIDs := st.User.Extra[podNameExtra], st.User.Extra[podUIDExtra]
	namespace, _, isSA := strings.Cut(strings.TrimPrefix(st.User.Username, "system:serviceaccount:"), ":")
	if !st.Authenticated || !strings.HasPrefix(st.User.Username, "system:serviceaccount:") || !isSA || len(podNames) != 1 || len(podUIDs) != 1 {
		return agent.StartPlan{}, http.StatusUnauthorized, errors.New("not a pod's token for this provider")
	}
	pod, err := b.client.CoreV1().Pods(namespace).Get(ctx, podNames[0], metav1.GetOptions{})
	if err != nil || string(pod.UID) != podUIDs[0] {
		return agent.StartPlan{}, http.StatusUnauthorized, errors.New("the token's pod is gone")
	}
	name := pod.Labels[functionLabel]
	dep, err := b.getFunction(ctx, namespace, name)
	if err != nil || len(pod.Spec.Containers) == 0 {
		return agent.StartPlan{}, http.StatusNotFound, fmt.Errorf("pod %s is not a function's", pod.Name)
	}
	// The version names the image the kubelet actually ran, which it may
	// report a moment after the container started.
	if pod, err = b.awaitImageID(ctx, pod); err != nil {
		b.log.Warn("pod starts cold: its image ID is not reported yet", "pod", pod.Name, "err", err)
		return agent.StartPlan{}, http.StatusOK, nil
	}
	in, err := b.versionInputs(ctx, pod)
	if err != nil {
		return agent.StartPlan{}, http.StatusServiceUnavailable, err
	}
	cache, err := b.cacheFor(namespace)
	if err != nil {
		return agent.StartPlan{}, http.StatusServiceUnavailable, err
	}
	spec := b.workerSpec(cache, dep, pod, name, in)
	snap, restore := b.cfg.Snapshots.Start(ctx, b.cfg.Snapshots.Function(namespace, name), string(pod.UID), spec)
	pw := &podWorker{snap: snap}
	// The version and checkpoint request go to the pod only for it to
	// report them back (agent.PlanStatus) to a provider restarted while it
	// runs, which then adopts it (adopt.go).
	plan := agent.StartPlan{Version: snap.Version(), CheckpointAt: snap.CheckpointAt()}
	if restore != nil {
		if img, ok := b.cfg.Snapshots.RemoteImages(ctx, snap, *restore); ok {
			plan.Restore = &agent.RemoteImage{URL: img.URL.String(), SHA256: img.SHA256, Size: img.Size, Key: img.Key,
				RequestNumber: restore.RequestNumber}
			pw.restoreKey = img.Key
		}
	}
	b.mu.Lock()
	if old := b.pods[pod.UID]; old != nil {
		b.cfg.Snapshots.Gone(old.snap) // the agent restarted in the same pod
	}
	b.pods[pod.UID] = pw
	b.mu.Unlock()
	cache.slot(pod).snap.Store(snap)
	return plan, http.StatusOK, nil
}

// workerSpec is how a function pod of dep takes part in the snapshot life
// cycle: the pod checkpoints itself through its agent and uploads to a
// presigned URL.
func (b *Backend) workerSpec(cache *nsCache, dep *appsv1.Deployment, pod *corev1.Pod, name string, in coordinator.VersionInputs) coordinator.Spec {
	namespace, podName := pod.Namespace, pod.Name
	return coordinator.Spec{
		Version: in, Annotations: dep.Spec.Template.Annotations, Generation: uint64(dep.Generation),
		Uploader: podUploader{b: b, namespace: namespace, pod: podName},
		OnDumped: cache.changed.Notify,
		Logf: func(format string, args ...any) {
			b.log.Info(fmt.Sprintf(format, args...), "function", name+"."+namespace, "pod", podName)
		},
	}
}

// versionInputs is what the pod's function process is built from: the
// image as the kubelet resolved it, fprocess, environment, the secrets it
// mounts (with their values' digests) and its resources.
func (b *Backend) versionInputs(ctx context.Context, pod *corev1.Pod) (coordinator.VersionInputs, error) {
	c := pod.Spec.Containers[0]
	id, ok := imageID(pod)
	if !ok {
		return coordinator.VersionInputs{}, errImageIDUnknown
	}
	image := c.Image + "@" + id // a rebuilt :latest is a new version
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	secrets := map[string][]byte{}
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret == nil {
				continue
			}
			s, err := b.client.CoreV1().Secrets(pod.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil {
				return coordinator.VersionInputs{}, fmt.Errorf("secret %s: %w", src.Secret.Name, err)
			}
			h := sha256.New()
			keys := make([]string, 0, len(s.Data))
			for k := range s.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(h, "%q %d\n", k, len(s.Data[k]))
				h.Write(s.Data[k])
			}
			secrets[s.Name] = []byte(hex.EncodeToString(h.Sum(nil)))
		}
	}
	return coordinator.VersionInputs{
		Image: image, Process: env[envProcess], Env: env, Secrets: secrets,
		Limits: functionResources(c.Resources.Limits), Requests: functionResources(c.Resources.Requests),
		ReadOnly: c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem,
	}, nil
}

// errImageIDUnknown: the kubelet has not reported the pod's image ID yet.
var errImageIDUnknown = errors.New("the function container's image ID is not reported yet")

// imageID is the ID of the image the function container runs.
func imageID(pod *corev1.Pod) (string, bool) {
	if len(pod.Spec.Containers) == 0 {
		return "", false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == pod.Spec.Containers[0].Name && cs.ImageID != "" {
			return cs.ImageID, true
		}
	}
	return "", false
}

// imageIDWait bounds how long a start plan waits for the kubelet to report
// the image ID; the agent waits for the plan before starting the function.
const imageIDWait = 3 * time.Second

// awaitImageID returns pod as soon as its image ID is reported.
func (b *Backend) awaitImageID(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, imageIDWait)
	defer cancel()
	for {
		if _, ok := imageID(pod); ok {
			return pod, nil
		}
		select {
		case <-ctx.Done():
			return pod, errImageIDUnknown
		case <-time.After(100 * time.Millisecond):
		}
		fresh, err := b.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || fresh.UID != pod.UID {
			return pod, errImageIDUnknown
		}
		pod = fresh
	}
}

// podWorkerOf returns the snapshot part of pod uid, or nil.
func (b *Backend) podWorkerOf(uid k8stypes.UID) *podWorker {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pods[uid]
}

// observe feeds a finished call on pod uid to the coordinator and evicts
// the pod when the engine says it is due (the evaluation's eviction rate).
func (b *Backend) observe(uid k8stypes.UID, namespace, podName string, o coordinator.Outcome) {
	pw := b.podWorkerOf(uid)
	if pw == nil || b.cfg.Snapshots == nil {
		return
	}
	if b.cfg.Snapshots.Observe(pw.snap, o) {
		go b.evict(pw, namespace, podName)
	}
}

// evict deletes a pod once its checkpoint, if any, is done; its
// Deployment replaces it. A delete the API server does not answer (it is
// restarting, or overloaded) is retried with backoff for up to
// evictRetryFor: otherwise the pod would serve past its evict-after count
// for good, since nothing else would ever evict it.
func (b *Backend) evict(pw *podWorker, namespace, podName string) {
	deadline := time.Now().Add(coordinator.Timeout)
	for pw.snap.Checkpointing() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	giveUp := time.Now().Add(evictRetryFor)
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := b.client.CoreV1().Pods(namespace).Delete(ctx, podName, metav1.DeleteOptions{})
		cancel()
		switch {
		case err == nil || apierrors.IsNotFound(err):
			if attempt > 1 {
				b.log.Info("pod evicted after retries", "pod", podName, "attempts", attempt)
			}
			return
		case apierrors.IsForbidden(err) || time.Now().After(giveUp) || b.isClosed():
			// No RBAC for it (retrying cannot help), out of time, or the
			// provider is stopping.
			b.log.Warn("evict pod", "pod", podName, "attempts", attempt, "err", err)
			return
		}
		if attempt == 1 {
			b.log.Warn("evict pod: retrying", "pod", podName, "err", err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 5*time.Second)
	}
}

// evictRetryFor bounds how long an eviction is retried.
const evictRetryFor = 5 * time.Minute

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// learnRestore learns, once, how a pod that was told to restore started.
func (b *Backend) learnRestore(p *corev1.Pod) {
	pw := b.podWorkerOf(p.UID)
	if pw == nil || pw.restoreKey == "" || p.Status.PodIP == "" {
		return
	}
	pw.reported.Do(func() {
		go func() {
			st, err := agentStatus(context.Background(), b.agentClient(), p.Status.PodIP)
			switch {
			case err != nil:
				b.log.Warn("agent status", "pod", p.Name, "err", err)
			case st.Restored:
				b.cfg.Snapshots.Restored(pw.snap, st.RestoreTime)
			default:
				b.cfg.Snapshots.RestoreFailed(pw.snap, pw.restoreKey, errors.New(st.RestoreError), st.RestoreCorrupt)
			}
		}()
	})
}

// podGone ends pod uid's part in the snapshot life cycle.
func (b *Backend) podGone(uid k8stypes.UID) {
	b.mu.Lock()
	pw := b.pods[uid]
	delete(b.pods, uid)
	b.mu.Unlock()
	if pw != nil {
		b.cfg.Snapshots.Gone(pw.snap)
	}
}

// agentClient reaches pods' control ports.
func (b *Backend) agentClient() *http.Client {
	return &http.Client{Transport: b.transport, Timeout: coordinator.Timeout}
}

func controlURL(ip, path string) string {
	return "http://" + net.JoinHostPort(ip, strconv.Itoa(ControlPort)) + path
}

func agentStatus(ctx context.Context, client *http.Client, ip string) (agent.Status, error) {
	var st agent.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, controlURL(ip, "/status"), nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
}

// podUploader checkpoints a pod through its agent's control port.
type podUploader struct {
	b              *Backend
	namespace, pod string
}

func (u podUploader) DumpAndUpload(ctx context.Context, put *url.URL) (coordinator.Upload, error) {
	pod, err := u.b.client.CoreV1().Pods(u.namespace).Get(ctx, u.pod, metav1.GetOptions{})
	if err != nil {
		return coordinator.Upload{}, fmt.Errorf("pod %s: %w", u.pod, err)
	}
	body, _ := json.Marshal(agent.CheckpointRequest{Upload: &agent.Upload{URL: put.String()}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, controlURL(pod.Status.PodIP, "/checkpoint"), bytes.NewReader(body))
	if err != nil {
		return coordinator.Upload{}, err
	}
	resp, err := u.b.agentClient().Do(req)
	if err != nil {
		return coordinator.Upload{}, fmt.Errorf("agent: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return coordinator.Upload{}, fmt.Errorf("agent: %s", bytes.TrimSpace(msg))
	}
	var res agent.CheckpointResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		return coordinator.Upload{}, fmt.Errorf("agent: %w", err)
	}
	return coordinator.Upload{
		DumpResult:  coordinator.DumpResult{ImageBytes: res.ImageBytes, DumpTime: res.DumpTime, FrozenTime: res.FrozenTime},
		PackedBytes: res.PackedBytes, SHA256: res.SHA256,
	}, nil
}

// Inspect reports the engine's state of a function's current version, as
// its newest pod that asked for a plan saw it.
func (b *Backend) Inspect(ctx context.Context, namespace, name string) (any, error) {
	namespace = b.namespace(namespace)
	if err := b.served(ctx, namespace); err != nil {
		return nil, err
	}
	dep, err := b.getFunction(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	if isAgentless(dep) {
		return b.coldState(dep), nil
	}
	if b.cfg.Snapshots == nil {
		return nil, fmt.Errorf("snapshots are disabled: %w", errdefs.ErrNotFound)
	}
	pods, err := b.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: functionLabel + "=" + name})
	if err != nil {
		return nil, apiError(err, "pods of function %s.%s", name, namespace)
	}
	sort.Slice(pods.Items, func(i, j int) bool {
		return pods.Items[i].CreationTimestamp.After(pods.Items[j].CreationTimestamp.Time)
	})
	for i := range pods.Items {
		if _, ok := imageID(&pods.Items[i]); !ok {
			continue
		}
		in, err := b.versionInputs(ctx, &pods.Items[i])
		if err != nil {
			return nil, err
		}
		return b.cfg.Snapshots.Inspect(ctx, b.cfg.Snapshots.Function(namespace, name), in)
	}
	return nil, fmt.Errorf("function %s.%s has no running pod to inspect", name, namespace)
}
