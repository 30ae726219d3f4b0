package k8s

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/funcspec"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// Behaviour that must match faas-netes CE (pkg/handlers/deploy.go,
// update.go, namespaces.go; pkg/k8s/probes.go, securityContext.go), and
// where we part from it on purpose.

// newBackendWith is newBackend with cfg adjusted first.
func newBackendWith(t *testing.T, adjust func(*Config), objs ...runtime.Object) (*Backend, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	cfg := Config{
		AgentImage: testAgent, ScaleFromZeroTimeout: 2 * time.Second,
		ProviderURL: "http://pronghorn.openfaas:8080",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	b, err := New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b, client
}

func annotations(kv ...string) *map[string]string { return labels(kv...) }

func TestAgentlessDeploy(t *testing.T) {
	tests := []struct {
		name      string
		req       types.FunctionDeployment
		agentless bool
		wantErr   error
	}{
		{"no fprocess anywhere", types.FunctionDeployment{Service: "fn", Image: "ghcr.io/openfaas/figlet:latest",
			EnvVars: map[string]string{"write_debug": "true"}}, true, nil},
		{"envProcess", types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "pypy3 index.py"}, false, nil},
		{"fprocess env var", types.FunctionDeployment{Service: "fn", Image: "img", EnvVars: map[string]string{"fprocess": "node index.js"}}, false, nil},
		{"fprocess annotation", types.FunctionDeployment{Service: "fn", Image: "img", Annotations: annotations(ProcessAnnotation, "java -jar f.jar")}, false, nil},
		{"fprocess label", types.FunctionDeployment{Service: "fn", Image: "img", Labels: labels(ProcessAnnotation, "java -jar f.jar")}, false, nil},
		{"blank fprocess", types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "  "}, true, nil},
		{"opted out", types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "cat",
			Annotations: annotations(AgentAnnotation, "false")}, true, nil},
		// The image's own ENV fprocess, which the agent reads.
		{"agent asked for without a visible fprocess", types.FunctionDeployment{Service: "fn", Image: "img",
			Annotations: annotations(AgentAnnotation, "true")}, false, nil},
		{"agent annotation not a boolean", types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "cat",
			Annotations: annotations(AgentAnnotation, "maybe")}, false, errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// With a coordinator whose default strategy snapshots, so an
			// agentless function shows it gets no snapshot privileges.
			b, client := snapshotBackend(t)
			b.cfg.HTTPProbe = true
			ctx := ctxT(t)
			err := b.Deploy(ctx, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := getDeployment(t, client, "fn")
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			if got := isAgentless(d); got != tt.agentless {
				t.Fatalf("agentless = %v, want %v", got, tt.agentless)
			}
			var ports []int32
			for _, p := range c.Ports {
				ports = append(ports, p.ContainerPort)
			}
			privileged := c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
			if !tt.agentless {
				if !slices.Equal(c.Command, agentCommand) || len(pod.InitContainers) != 1 || !slices.Equal(ports, []int32{8080, 8081}) || !privileged {
					t.Errorf("agent pod: command %v, init %d, ports %v, privileged %v", c.Command, len(pod.InitContainers), ports, privileged)
				}
				if d.Spec.Template.Annotations[AgentAnnotation] == "false" {
					t.Errorf("agent pod marked agentless: %v", d.Spec.Template.Annotations)
				}
				return
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"command", len(c.Command) + len(c.Args), 0},
				{"init containers", len(pod.InitContainers), 0},
				{"ports", ports, []int32{8080}},
				{"port name", c.Ports[0].Name, "http"},
				{"deployment marked", d.Annotations[AgentAnnotation], "false"},
				{"pod marked", d.Spec.Template.Annotations[AgentAnnotation], "false"},
				{"privileged", privileged, false},
				{"volumes", len(pod.Volumes), 0},
				{"mounts", len(c.VolumeMounts), 0},
				{"readiness", c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path == "/_/health" && c.ReadinessProbe.HTTPGet.Port.IntValue() == 8080, true},
			}
			for _, ck := range checks {
				if !equal(ck.got, ck.want) {
					t.Errorf("%s = %#v, want %#v", ck.what, ck.got, ck.want)
				}
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, envPrefix) {
					t.Errorf("agent env %s in an agentless pod", e.Name)
				}
			}
			want := maps.Clone(tt.req.EnvVars)
			if strings.TrimSpace(tt.req.EnvProcess) != "" {
				if want == nil {
					want = map[string]string{}
				}
				want[envProcess] = tt.req.EnvProcess
			}
			if got := envMap(c.Env); !maps.Equal(got, want) && len(got)+len(want) > 0 {
				t.Errorf("env = %v, want %v", got, want)
			}
			// Status reports it; inspect reports strategy cold.
			st, err := b.Function(ctx, testNS, "fn")
			if err != nil {
				t.Fatal(err)
			}
			if (*st.Annotations)[AgentAnnotation] != "false" || st.Image != tt.req.Image {
				t.Errorf("status = %+v", st)
			}
			if cold := b.coldState(d); cold.Strategy != orchestrator.StrategyCold || cold.Config.Strategy != orchestrator.StrategyCold || len(cold.Pool) != 0 {
				t.Errorf("inspect state = %+v", cold)
			}
		})
	}
}

// TestAgentlessPodIsInvokedOn8080: a pod without the agent is picked, by
// its Ready condition, and called on the port its image serves.
func TestAgentlessPodIsInvokedOn8080(t *testing.T) {
	b, _ := newBackend(t, functionPod("figlet", "figlet-a", "10.0.0.8", ready))
	if err := b.Deploy(ctxT(t), types.FunctionDeployment{Service: "figlet", Image: "ghcr.io/openfaas/figlet:latest"}); err != nil {
		t.Fatal(err)
	}
	l, err := b.Acquire(ctxT(t), testNS, "figlet")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(provider.Outcome{StatusCode: http.StatusOK, Total: time.Millisecond})
	if got := l.URL().Host; got != "10.0.0.8:8080" {
		t.Errorf("url host = %s, want 10.0.0.8:8080", got)
	}
}

func TestProbes(t *testing.T) {
	httpGet := func(path string, port int32) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port)}}
	}
	lock := corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/.lock"}}}
	status := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/status", Port: intstr.FromInt32(8081), Scheme: corev1.URISchemeHTTP}}
	tcp := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8081)}}
	ce := DefaultProbeConfig()
	tuned := &ProbeConfig{InitialDelaySeconds: 0, TimeoutSeconds: 3, PeriodSeconds: 1}

	tests := []struct {
		name                string
		cfg                 func(*Config)
		proc                string
		annotations         *map[string]string
		ready, live         corev1.ProbeHandler
		readyCfg, liveCfg   ProbeConfig
		wantErr             error
		readyDelay, liveDly int32 // when not the configs'
	}{
		{"faas-netes CE, http_probe off", nil, "", nil, lock, lock, ce, ce, nil, -1, -1},
		{"http_probe", func(c *Config) { c.HTTPProbe = true }, "", nil, httpGet("/_/health", 8080), httpGet("/_/health", 8080), ce, ce, nil, -1, -1},
		{"settings", func(c *Config) { c.HTTPProbe, c.ReadinessProbe = true, tuned }, "", nil,
			httpGet("/_/health", 8080), httpGet("/_/health", 8080), *tuned, ce, nil, -1, -1},
		{"path annotation without http_probe", nil, "", annotations(ProbePathAnnotation, "/ready"),
			httpGet("/ready", 8080), httpGet("/ready", 8080), ce, ce, nil, -1, -1},
		{"initial delay annotation", func(c *Config) { c.HTTPProbe = true }, "", annotations(ProbeInitialDelayAnnotation, "30s"),
			httpGet("/_/health", 8080), httpGet("/_/health", 8080), ce, ce, nil, 30, 30},
		{"initial delay truncated to seconds", nil, "", annotations(ProbeInitialDelayAnnotation, "1m1.9s"), lock, lock, ce, ce, nil, 61, 61},
		{"agent", nil, "run", nil, status, tcp, ce, ce, nil, -1, -1},
		{"agent, settings", func(c *Config) { c.ReadinessProbe, c.LivenessProbe = tuned, tuned }, "run", nil, status, tcp, *tuned, *tuned, nil, -1, -1},
		{"agent keeps /status over the path annotation", nil, "run", annotations(ProbePathAnnotation, "/ready", ProbeInitialDelayAnnotation, "5s"),
			status, tcp, ce, ce, nil, 5, 5},
		{"bad delay", nil, "", annotations(ProbeInitialDelayAnnotation, "soon"), lock, lock, ce, ce, errdefs.ErrInvalid, -1, -1},
		{"negative delay", nil, "", annotations(ProbeInitialDelayAnnotation, "-5s"), lock, lock, ce, ce, errdefs.ErrInvalid, -1, -1},
		{"relative path", nil, "", annotations(ProbePathAnnotation, "ready"), lock, lock, ce, ce, errdefs.ErrInvalid, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackendWith(t, tt.cfg)
			err := b.Deploy(ctxT(t), types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: tt.proc, Annotations: tt.annotations})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := getDeployment(t, client, "fn").Spec.Template.Spec.Containers[0]
			for _, p := range []struct {
				what    string
				got     *corev1.Probe
				handler corev1.ProbeHandler
				cfg     ProbeConfig
				delay   int32
			}{
				{"readiness", c.ReadinessProbe, tt.ready, tt.readyCfg, tt.readyDelay},
				{"liveness", c.LivenessProbe, tt.live, tt.liveCfg, tt.liveDly},
			} {
				if p.delay >= 0 {
					p.cfg.InitialDelaySeconds = p.delay
				}
				want := &corev1.Probe{ProbeHandler: p.handler, InitialDelaySeconds: p.cfg.InitialDelaySeconds,
					TimeoutSeconds: p.cfg.TimeoutSeconds, PeriodSeconds: p.cfg.PeriodSeconds, SuccessThreshold: 1, FailureThreshold: 3}
				if !apiequality.Semantic.DeepEqual(p.got, want) {
					t.Errorf("%s probe = %s, want %s", p.what, describeProbe(p.got), describeProbe(want))
				}
			}
		})
	}
}

func describeProbe(p *corev1.Probe) string {
	if p == nil {
		return "none"
	}
	var h string
	switch {
	case p.HTTPGet != nil:
		h = fmt.Sprintf("GET %s :%s scheme %q", p.HTTPGet.Path, p.HTTPGet.Port.String(), p.HTTPGet.Scheme)
	case p.TCPSocket != nil:
		h = "TCP :" + p.TCPSocket.Port.String()
	case p.Exec != nil:
		h = "exec " + strings.Join(p.Exec.Command, " ")
	}
	return fmt.Sprintf("%s delay %d timeout %d period %d success %d failure %d",
		h, p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
}

func TestProbeSettingsChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *ProbeConfig
		ok   bool
	}{
		{"default", nil, true},
		{"no initial delay", &ProbeConfig{0, 1, 1}, true},
		{"negative delay", &ProbeConfig{-1, 1, 1}, false},
		{"no timeout", &ProbeConfig{0, 0, 1}, false},
		{"no period", &ProbeConfig{0, 1, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, which := range []string{"readiness", "liveness"} {
				cfg := Config{AgentImage: testAgent, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				if which == "readiness" {
					cfg.ReadinessProbe = tc.p
				} else {
					cfg.LivenessProbe = tc.p
				}
				b, err := New(fake.NewClientset(), cfg)
				if (err == nil) != tc.ok {
					t.Fatalf("%s %+v: err = %v", which, tc.p, err)
				}
				if err == nil && tc.p == nil && *b.cfg.ReadinessProbe != DefaultProbeConfig() {
					t.Errorf("default = %+v", *b.cfg.ReadinessProbe)
				}
			}
		})
	}
	// The backend keeps its own copy.
	p := &ProbeConfig{0, 1, 1}
	b, _ := New(fake.NewClientset(), Config{AgentImage: testAgent, ReadinessProbe: p, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	p.PeriodSeconds = 0
	if b.cfg.ReadinessProbe.PeriodSeconds != 1 {
		t.Error("a caller's later change reached the backend")
	}
}

func TestSetNonRootUser(t *testing.T) {
	tests := []struct {
		name       string
		nonRoot    bool
		req        types.FunctionDeployment
		wantUser   bool // RunAsUser 12000
		privileged bool
	}{
		{"off", false, types.FunctionDeployment{Service: "fn", Image: "img"}, false, false},
		{"agentless", true, types.FunctionDeployment{Service: "fn", Image: "img"}, true, false},
		{"agent, cold strategy", true, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run",
			Annotations: annotations(orchestrator.AnnotationStrategy, "cold")}, true, false},
		// CRIU needs root in a privileged container: snapshotting wins.
		{"agent, snapshotting", true, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run",
			Annotations: annotations(orchestrator.AnnotationStrategy, "fixed")}, false, true},
		{"agent, snapshotting, flag off", false, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := snapshotBackend(t)
			b.cfg.SetNonRootUser = tt.nonRoot
			if err := b.Deploy(ctxT(t), tt.req); err != nil {
				t.Fatal(err)
			}
			sc := getDeployment(t, client, "fn").Spec.Template.Spec.Containers[0].SecurityContext
			if got := sc.RunAsUser != nil && *sc.RunAsUser == 12000; got != tt.wantUser || (!tt.wantUser && sc.RunAsUser != nil) {
				t.Errorf("runAsUser = %v, want 12000: %v", sc.RunAsUser, tt.wantUser)
			}
			if got := sc.Privileged != nil && *sc.Privileged; got != tt.privileged {
				t.Errorf("privileged = %v, want %v", got, tt.privileged)
			}
		})
	}

	// Updates recompute it, and the conflict is logged once, not per function.
	b, client := snapshotBackend(t)
	var buf bytes.Buffer
	b.log = slog.New(slog.NewTextHandler(&buf, nil))
	b.cfg.SetNonRootUser = true
	ctx := ctxT(t)
	for _, name := range []string{"a", "b"} {
		if err := b.Deploy(ctx, types.FunctionDeployment{Service: name, Image: "img", EnvProcess: "run"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "set_nonroot_user does not apply"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, buf.String())
	}
	if err := b.Update(ctx, types.FunctionDeployment{Service: "a", Image: "img", EnvProcess: "run",
		Annotations: annotations(orchestrator.AnnotationStrategy, "cold")}); err != nil {
		t.Fatal(err)
	}
	if sc := getDeployment(t, client, "a").Spec.Template.Spec.Containers[0].SecurityContext; sc.RunAsUser == nil || *sc.RunAsUser != 12000 || sc.Privileged != nil {
		t.Errorf("after an update to cold: %+v", sc)
	}
}

func TestUpdateRollsPods(t *testing.T) {
	b, client := newBackend(t)
	ctx := ctxT(t)
	req := types.FunctionDeployment{Service: "fn", Image: "ghcr.io/me/fn:latest", EnvProcess: "run"}
	if err := b.Deploy(ctx, req); err != nil {
		t.Fatal(err)
	}
	if uid, ok := getDeployment(t, client, "fn").Spec.Template.Labels[uidLabel]; ok {
		t.Errorf("deploy set uid %q; faas-netes sets it on update only", uid)
	}
	seen := map[string]bool{}
	for i := range 3 {
		// The same request each time: only the uid label changes, and
		// that alone makes the Deployment controller roll the pods.
		if err := b.Update(ctx, req); err != nil {
			t.Fatal(err)
		}
		uid := getDeployment(t, client, "fn").Spec.Template.Labels[uidLabel]
		if uid == "" || seen[uid] {
			t.Fatalf("update %d: uid %q, seen %v", i, uid, seen)
		}
		seen[uid] = true
	}
	st, err := b.Function(ctx, testNS, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if st.Labels != nil {
		t.Errorf("status labels = %v, want none (uid is the provider's)", *st.Labels)
	}
	// As in faas-netes, a request's own uid label is applied after.
	req.Labels = labels(uidLabel, "pinned")
	if err := b.Update(ctx, req); err != nil {
		t.Fatal(err)
	}
	if uid := getDeployment(t, client, "fn").Spec.Template.Labels[uidLabel]; uid != "pinned" {
		t.Errorf("uid = %q, want the request's", uid)
	}
	if uid := newUID("5"); uid == "5" || newUID(uid) == uid {
		t.Error("newUID repeated a value")
	}
}

func TestUpdateReplicas(t *testing.T) {
	tests := []struct {
		name    string
		current int32
		labels  *map[string]string
		want    int32
	}{
		{"scale.min sets the count", 5, labels(scaleMinLabel, "2"), 2},
		{"scale.min raises it", 1, labels(scaleMinLabel, "4"), 4},
		{"no scale.min keeps it", 5, nil, 5},
		{"zero kept", 0, nil, 0},
		{"scale.min not a positive integer is ignored", 5, labels(scaleMinLabel, "zero"), 5},
		{"scale.min 0 is ignored", 3, labels(scaleMinLabel, "0"), 3},
		{"kept within a new scale.max", 5, labels(funcspec.LabelScaleMax, "3"), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackend(t)
			ctx := ctxT(t)
			req := types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run"}
			if err := b.Deploy(ctx, req); err != nil {
				t.Fatal(err)
			}
			if err := b.Scale(ctx, testNS, "fn", uint64(tt.current)); err != nil {
				t.Fatal(err)
			}
			req.Labels = tt.labels
			if err := b.Update(ctx, req); err != nil {
				t.Fatal(err)
			}
			if got := *getDeployment(t, client, "fn").Spec.Replicas; got != tt.want {
				t.Errorf("replicas = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestUpdateRemovesLabelsAndAnnotations: what an update no longer asks for
// goes from the Deployment, its pod template and the Service; what others
// put there stays.
func TestUpdateRemovesLabelsAndAnnotations(t *testing.T) {
	tests := []struct {
		name   string
		update types.FunctionDeployment
	}{
		{"agent", types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run"}},
		{"agentless", types.FunctionDeployment{Service: "fn", Image: "img"}},
		{"other annotations instead", types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run",
			Labels: labels("c", "3"), Annotations: annotations("d", "4")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackend(t)
			ctx := ctxT(t)
			if err := b.Deploy(ctx, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run",
				Labels: labels("b", "2"), Annotations: annotations("a", "1")}); err != nil {
				t.Fatal(err)
			}
			// Others' marks: the Deployment controller's revision, a
			// GitOps tool's annotation on the Service.
			d := getDeployment(t, client, "fn")
			d.Annotations["deployment.kubernetes.io/revision"] = "1"
			if _, err := client.AppsV1().Deployments(testNS).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			svc, _ := client.CoreV1().Services(testNS).Get(ctx, "fn", metav1.GetOptions{})
			svc.Annotations["argocd.argoproj.io/tracking-id"] = "x"
			if _, err := client.CoreV1().Services(testNS).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}

			if err := b.Update(ctx, tt.update); err != nil {
				t.Fatal(err)
			}
			d = getDeployment(t, client, "fn")
			svc, _ = client.CoreV1().Services(testNS).Get(ctx, "fn", metav1.GetOptions{})
			for what, m := range map[string]map[string]string{
				"deployment labels": d.Labels, "deployment annotations": d.Annotations,
				"pod labels": d.Spec.Template.Labels, "pod annotations": d.Spec.Template.Annotations,
				"service labels": svc.Labels, "service annotations": svc.Annotations,
			} {
				if _, ok := m["a"]; ok {
					t.Errorf("%s keep a: %v", what, m)
				}
				if _, ok := m["b"]; ok {
					t.Errorf("%s keep b: %v", what, m)
				}
			}
			if d.Annotations["deployment.kubernetes.io/revision"] != "1" || svc.Annotations["argocd.argoproj.io/tracking-id"] != "x" {
				t.Errorf("others' annotations lost: deployment %v, service %v", d.Annotations, svc.Annotations)
			}
			if tt.update.Labels != nil && (d.Spec.Template.Labels["c"] != "3" || d.Annotations["d"] != "4" || d.Spec.Template.Annotations["d"] != "4" || svc.Annotations["d"] != "4") {
				t.Errorf("new ones missing: pod labels %v, annotations %v, service %v", d.Spec.Template.Labels, d.Annotations, svc.Annotations)
			}
			if got, want := isAgentless(d), tt.update.EnvProcess == ""; got != want || (d.Annotations[AgentAnnotation] == "false") != want {
				t.Errorf("agentless %v, annotations %v; want agentless %v", got, d.Annotations, want)
			}
			st, err := b.Function(ctx, testNS, "fn")
			if err != nil {
				t.Fatal(err)
			}
			if st.Annotations != nil && (*st.Annotations)["a"] != "" || st.Labels != nil && (*st.Labels)["b"] != "" {
				t.Errorf("status still has them: %+v %+v", st.Labels, st.Annotations)
			}
		})
	}
}

func TestNamespaceServing(t *testing.T) {
	ns := func(name string, ann map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
	}
	objs := []runtime.Object{
		ns(testNS, nil),
		ns("team-a", map[string]string{"openfaas": "1"}),
		ns("team-b", map[string]string{"openfaas": "1"}), // no RBAC for the provider
		ns("plain", nil),
		ns("kube-system", map[string]string{"openfaas": "1"}),
	}
	forbidTeamB := func(c *fake.Clientset) {
		c.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetNamespace() != "team-b" {
				return false, nil, nil
			}
			gr := schema.GroupResource{Group: a.GetResource().Group, Resource: a.GetResource().Resource}
			return true, nil, apierrors.NewForbidden(gr, "", errors.New(`User "system:serviceaccount:openfaas:pronghorn" cannot do that in namespace "team-b"`))
		})
	}
	type call func(context.Context, *Backend, string) error
	calls := map[string]call{
		"deploy": func(ctx context.Context, b *Backend, ns string) error {
			return b.Deploy(ctx, types.FunctionDeployment{Service: "fn2", Image: "img", EnvProcess: "run", Namespace: ns})
		},
		"update": func(ctx context.Context, b *Backend, ns string) error {
			return b.Update(ctx, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run", Namespace: ns})
		},
		"status": func(ctx context.Context, b *Backend, ns string) error {
			_, err := b.Function(ctx, ns, "fn")
			return err
		},
		"list":  func(ctx context.Context, b *Backend, ns string) error { _, err := b.Functions(ctx, ns); return err },
		"scale": func(ctx context.Context, b *Backend, ns string) error { return b.Scale(ctx, ns, "fn", 2) },
		"logs": func(ctx context.Context, b *Backend, ns string) error {
			_, err := b.Query(ctx, logs.Request{Name: "fn", Namespace: ns})
			return err
		},
		"secrets": func(ctx context.Context, b *Backend, ns string) error { _, err := b.Secrets(ctx, ns); return err },
		"create secret": func(ctx context.Context, b *Backend, ns string) error {
			return b.CreateSecret(ctx, types.Secret{Name: "s2", Namespace: ns, Value: "v"})
		},
		"update secret": func(ctx context.Context, b *Backend, ns string) error {
			return b.UpdateSecret(ctx, types.Secret{Name: "s", Namespace: ns, Value: "v"})
		},
		"delete secret": func(ctx context.Context, b *Backend, ns string) error { return b.DeleteSecret(ctx, ns, "s") },
		"invoke": func(ctx context.Context, b *Backend, ns string) error {
			l, err := b.Acquire(ctx, ns, "fn")
			if err == nil {
				l.Release(provider.Outcome{})
			}
			return err
		},
		"delete": func(ctx context.Context, b *Backend, ns string) error { return b.Delete(ctx, ns, "fn") },
	}
	// Deletes last: they remove what the others use.
	order := []string{"deploy", "update", "status", "list", "scale", "logs", "secrets", "create secret", "update secret",
		"invoke", "delete secret", "delete"}
	if len(order) != len(calls) {
		t.Fatal("order does not name every call")
	}

	tests := []struct {
		name        string
		clusterRole bool
		namespace   string
		list        []string
		want        int // HTTP status of every call but invoke; 0 = success
		invoke      int
	}{
		// faas-netes CE: only function_namespace, 400 for any other.
		{"CE, default namespace", false, testNS, []string{testNS}, 0, 0},
		{"CE, annotated namespace", false, "team-a", []string{testNS}, http.StatusBadRequest, http.StatusNotFound},
		{"CE, unknown namespace", false, "nowhere", []string{testNS}, http.StatusBadRequest, http.StatusNotFound},
		{"cluster role, annotated", true, "team-a", []string{testNS, "team-a"}, 0, 0},
		{"cluster role, not annotated", true, "plain", []string{testNS, "team-a"}, http.StatusBadRequest, http.StatusNotFound},
		{"cluster role, missing", true, "nowhere", []string{testNS, "team-a"}, http.StatusBadRequest, http.StatusNotFound},
		{"cluster role, kube-system", true, "kube-system", []string{testNS, "team-a"}, http.StatusBadRequest, http.StatusNotFound},
		// Annotated, but the provider has no Role there: never listed, never a 500.
		{"cluster role, no RBAC", true, "team-b", []string{testNS, "team-a"}, http.StatusNotFound, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackendWith(t, func(c *Config) { c.ClusterRole = tt.clusterRole }, objs...)
			ctx := ctxT(t)
			// The function and secret the calls work on, put there directly
			// so every namespace has one.
			for _, n := range []string{testNS, "team-a", "team-b", "plain", "kube-system"} {
				dep, err := b.makeDeployment(types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run", Namespace: n}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := client.AppsV1().Deployments(n).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				s := managedSecret("s", "v")
				s.Namespace = n
				if _, err := client.CoreV1().Secrets(n).Create(ctx, s, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				p := functionPod("fn", "fn-"+n, "10.0.0.1", ready)
				p.Namespace = n
				if _, err := client.CoreV1().Pods(n).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			forbidTeamB(client)

			got, err := b.Namespaces(ctx)
			if err != nil || !slices.Equal(got, tt.list) {
				t.Errorf("namespaces = %v, %v; want %v", got, err, tt.list)
			}
			for _, name := range order {
				err := calls[name](ctx, b, tt.namespace)
				want := tt.want
				if name == "invoke" {
					want = tt.invoke
				}
				switch {
				case want == 0 && err != nil:
					t.Errorf("%s: %v", name, err)
				case want != 0 && errdefs.HTTPStatus(err) != want:
					t.Errorf("%s: status %d (%v), want %d", name, errdefs.HTTPStatus(err), err, want)
				case want == http.StatusBadRequest && name != "invoke" && !tt.clusterRole && !strings.HasPrefix(err.Error(), "namespace must be: "+testNS):
					t.Errorf("%s: %q is not faas-netes CE's answer", name, err)
				}
			}
			if !tt.clusterRole {
				// CE mode reads no Namespace object at all.
				for _, a := range client.Actions() {
					if a.GetResource().Resource == "namespaces" {
						t.Errorf("namespace API call in CE mode: %v", a)
					}
				}
			}
		})
	}
}

// TestNamespacesListing: which namespaces /system/namespaces offers.
func TestNamespacesListing(t *testing.T) {
	ann := map[string]string{"openfaas": "1"}
	ns := func(name string, ann map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
	}
	forbidden := func(resource string, namespace string) func(*fake.Clientset) {
		return func(c *fake.Clientset) {
			c.PrependReactor("list", resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
				if namespace != "" && a.GetNamespace() != namespace {
					return false, nil, nil
				}
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "", errors.New("no RBAC"))
			})
		}
	}
	tests := []struct {
		name        string
		clusterRole bool
		setup       func(*fake.Clientset)
		want        []string
		wantErr     bool
	}{
		{"CE lists only its namespace", false, nil, []string{testNS}, false},
		{"cluster role", true, nil, []string{testNS, "team-a", "team-b"}, false},
		{"cannot list namespaces", true, forbidden("namespaces", ""), []string{testNS}, false},
		{"no RBAC in one", true, forbidden("deployments", "team-b"), []string{testNS, "team-a"}, false},
		{"API down", true, func(c *fake.Clientset) {
			c.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewServiceUnavailable("etcd")
			})
		}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			b, client := newBackendWith(t, func(c *Config) {
				c.ClusterRole = tt.clusterRole
				c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
			}, ns("team-a", ann), ns("team-b", ann), ns("plain", nil), ns("kube-system", ann))
			if tt.setup != nil {
				tt.setup(client)
			}
			for range 3 { // as repeated metrics scrapes would
				got, err := b.Namespaces(ctxT(t))
				if tt.wantErr {
					if errdefs.HTTPStatus(err) != http.StatusServiceUnavailable {
						t.Fatalf("err = %v, want a 503", err)
					}
					return
				}
				if err != nil || !slices.Equal(got, tt.want) {
					t.Fatalf("namespaces = %v, %v; want %v", got, err, tt.want)
				}
			}
			if n := strings.Count(buf.String(), "no RBAC there"); n > 1 {
				t.Errorf("a hidden namespace was reported %d times", n)
			}
		})
	}
}
