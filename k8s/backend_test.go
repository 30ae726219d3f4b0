package k8s

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/funcspec"
)

const (
	testNS    = "openfaas-fn"
	testAgent = "ghcr.io/pronghorn-openfaas/pronghorn:0.1.0"
)

func newBackend(t *testing.T, objs ...runtime.Object) (*Backend, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	b, err := New(client, Config{
		AgentImage: testAgent, ScaleFromZeroTimeout: 2 * time.Second,
		ProviderURL: "http://pronghorn.openfaas:8080",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return b, client
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func labels(kv ...string) *map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &m
}

func managedSecret(name, value string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: map[string]string{managedByLabel: managedByValue}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{name: []byte(value)},
	}
}

func fullRequest() types.FunctionDeployment {
	return types.FunctionDeployment{
		Service: "counter", Image: "ghcr.io/me/counter-pypy:0.2", Namespace: testNS,
		EnvProcess:  "pypy3 index.py",
		EnvVars:     map[string]string{"write_debug": "true", "upstream_url": "http://127.0.0.1:5000"},
		Constraints: []string{"kubernetes.io/arch == amd64"},
		Secrets:     []string{"api-key", "registry"},
		Labels:      labels("com.openfaas.scale.min", "2", "team", "a"),
		Annotations: labels("topic", "orders"),
		Limits:      &types.FunctionResources{Memory: "256Mi", CPU: "500m"},
		Requests:    &types.FunctionResources{Memory: "128Mi", CPU: "100m"},

		ReadOnlyRootFilesystem: true,
	}
}

func registrySecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry", Namespace: testNS},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
	}
}

func getDeployment(t *testing.T, client *fake.Clientset, name string) *appsv1.Deployment {
	t.Helper()
	d, err := client.AppsV1().Deployments(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func envMap(env []corev1.EnvVar) map[string]string {
	m := map[string]string{}
	for _, e := range env {
		m[e.Name] = e.Value
	}
	return m
}

func TestDeployCreatesDeploymentAndService(t *testing.T) {
	b, client := newBackend(t, managedSecret("api-key", "s3cret"), registrySecret())
	ctx := ctxT(t)
	if err := b.Deploy(ctx, fullRequest()); err != nil {
		t.Fatal(err)
	}
	d := getDeployment(t, client, "counter")
	pod := d.Spec.Template.Spec

	checks := []struct {
		what      string
		got, want any
	}{
		{"deployment labels", d.Labels, map[string]string{functionLabel: "counter"}},
		{"selector", d.Spec.Selector.MatchLabels, map[string]string{functionLabel: "counter"}},
		{"replicas from com.openfaas.scale.min", *d.Spec.Replicas, int32(2)},
		{"pod labels", d.Spec.Template.Labels, map[string]string{functionLabel: "counter", "team": "a", scaleMinLabel: "2"}},
		{"annotations", d.Spec.Template.Annotations, map[string]string{"topic": "orders", scrapeAnnotation: "false"}},
		{"strategy", d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue(), 0},
		{"containers", len(pod.Containers), 1},
		{"init containers", len(pod.InitContainers), 1},
		{"init image", pod.InitContainers[0].Image, testAgent},
		{"init command", pod.InitContainers[0].Command, []string{"cp", "/usr/bin/pronghorn", "/pronghorn/pronghorn"}},
		{"init mount", pod.InitContainers[0].VolumeMounts[0].MountPath, "/pronghorn"},
		{"node selector", pod.NodeSelector, map[string]string{"kubernetes.io/arch": "amd64"}},
		{"pull secrets", pod.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "registry"}}},
		{"service links", *pod.EnableServiceLinks, false},
		{"token", *pod.AutomountServiceAccountToken, false},
	}
	c := pod.Containers[0]
	checks = append(checks, []struct {
		what      string
		got, want any
	}{
		{"container name", c.Name, "counter"},
		{"image", c.Image, "ghcr.io/me/counter-pypy:0.2"},
		{"command", c.Command, []string{"/pronghorn/pronghorn", "agent", "--from-env"}},
		{"args", len(c.Args), 0},
		{"pull policy", c.ImagePullPolicy, corev1.PullAlways},
		{"env", envMap(c.Env), map[string]string{
			"fprocess": "pypy3 index.py", "write_debug": "true", "upstream_url": "http://127.0.0.1:5000",
			"PRONGHORN_FUNCTION": "counter.openfaas-fn", "PRONGHORN_PROVIDER_URL": "http://pronghorn.openfaas:8080",
		}},
		{"ports", []int32{c.Ports[0].ContainerPort, c.Ports[1].ContainerPort}, []int32{8080, 8081}},
		{"probe path", c.ReadinessProbe.HTTPGet.Path, "/status"},
		{"probe port", c.ReadinessProbe.HTTPGet.Port.IntValue(), 8081},
		{"read-only root", *c.SecurityContext.ReadOnlyRootFilesystem, true},
		{"memory limit", c.Resources.Limits.Memory().String(), "256Mi"},
		{"cpu limit", c.Resources.Limits.Cpu().String(), "500m"},
		{"memory request", c.Resources.Requests.Memory().String(), "128Mi"},
		{"cpu request", c.Resources.Requests.Cpu().String(), "100m"},
	}...)
	for _, ck := range checks {
		if !equal(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.what, ck.got, ck.want)
		}
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if m := mounts["/var/openfaas/secrets"]; m.Name != "counter-projected-secrets" || !m.ReadOnly {
		t.Errorf("secrets mount = %+v", m)
	}
	if m := mounts["/pronghorn"]; m.Name != agentVolume || !m.ReadOnly {
		t.Errorf("agent mount = %+v", m)
	}
	if _, ok := mounts["/tmp"]; !ok {
		t.Errorf("read-only root without a writable /tmp: %+v", c.VolumeMounts)
	}
	var projected *corev1.ProjectedVolumeSource
	for _, v := range pod.Volumes {
		if v.Name == "counter-projected-secrets" {
			projected = v.Projected
		}
	}
	if projected == nil || len(projected.Sources) != 1 || projected.Sources[0].Secret.Name != "api-key" ||
		!equal(projected.Sources[0].Secret.Items, []corev1.KeyToPath{{Key: "api-key", Path: "api-key"}}) {
		t.Errorf("projected secrets = %+v", projected)
	}

	svc, err := client.CoreV1().Services(testNS).Get(ctx, "counter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || !maps.Equal(svc.Spec.Selector, map[string]string{functionLabel: "counter"}) ||
		len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("service = %+v", svc.Spec)
	}
}

func equal(a, b any) bool {
	switch av := a.(type) {
	case map[string]string:
		return maps.Equal(av, b.(map[string]string))
	case []string:
		return slices.Equal(av, b.([]string))
	case []int32:
		return slices.Equal(av, b.([]int32))
	case []corev1.LocalObjectReference:
		return slices.Equal(av, b.([]corev1.LocalObjectReference))
	case []corev1.KeyToPath:
		return slices.EqualFunc(av, b.([]corev1.KeyToPath), func(x, y corev1.KeyToPath) bool { return x.Key == y.Key && x.Path == y.Path })
	default:
		return a == b
	}
}

func TestDeployProcessSources(t *testing.T) {
	tests := []struct {
		name string
		req  func(*types.FunctionDeployment)
		want string
	}{
		{"envProcess", func(r *types.FunctionDeployment) { r.EnvProcess = "node index.js" }, "node index.js"},
		{"envVars fprocess", func(r *types.FunctionDeployment) { r.EnvVars = map[string]string{"fprocess": "java -jar f.jar"} }, "java -jar f.jar"},
		{"annotation", func(r *types.FunctionDeployment) { r.Annotations = labels(ProcessAnnotation, "pypy3 a.py") }, "pypy3 a.py"},
		{"label", func(r *types.FunctionDeployment) { r.Labels = labels(ProcessAnnotation, "pypy3 b.py") }, "pypy3 b.py"},
		{"envProcess beats envVars", func(r *types.FunctionDeployment) {
			r.EnvProcess, r.EnvVars = "a", map[string]string{"fprocess": "b"}
		}, "a"},
		// None: the image runs its own entrypoint (TestAgentlessDeploy).
		{"none", func(r *types.FunctionDeployment) {}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackend(t)
			req := types.FunctionDeployment{Service: "fn", Image: "img"}
			tt.req(&req)
			if err := b.Deploy(ctxT(t), req); err != nil {
				t.Fatal(err)
			}
			d := getDeployment(t, client, "fn")
			if got := envMap(d.Spec.Template.Spec.Containers[0].Env)["fprocess"]; got != tt.want {
				t.Errorf("fprocess = %q, want %q", got, tt.want)
			}
			if *d.Spec.Replicas != 1 {
				t.Errorf("replicas = %d, want 1 without com.openfaas.scale.min", *d.Spec.Replicas)
			}
		})
	}
}

func TestDeployErrors(t *testing.T) {
	base := func() types.FunctionDeployment {
		return types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run"}
	}
	tests := []struct {
		name  string
		setup func(*Backend, *fake.Clientset)
		req   func(*types.FunctionDeployment)
		want  error
	}{
		{"duplicate", func(b *Backend, _ *fake.Clientset) {
			if err := b.Deploy(context.Background(), base()); err != nil {
				panic(err)
			}
		}, nil, errdefs.ErrAlreadyExists},
		{"invalid memory limit", nil, func(r *types.FunctionDeployment) { r.Limits = &types.FunctionResources{Memory: "lots"} }, errdefs.ErrInvalid},
		{"invalid cpu request", nil, func(r *types.FunctionDeployment) { r.Requests = &types.FunctionResources{CPU: "1.2.3"} }, errdefs.ErrInvalid},
		{"negative limit", nil, func(r *types.FunctionDeployment) { r.Limits = &types.FunctionResources{CPU: "-1"} }, errdefs.ErrInvalid},
		{"no image", nil, func(r *types.FunctionDeployment) { r.Image = "" }, errdefs.ErrInvalid},
		{"no name", nil, func(r *types.FunctionDeployment) { r.Service = "" }, errdefs.ErrInvalid},
		{"missing secret", nil, func(r *types.FunctionDeployment) { r.Secrets = []string{"nope"} }, errdefs.ErrInvalid},
		{"scale.min above the provider's maximum", nil, func(r *types.FunctionDeployment) { r.Labels = labels(scaleMinLabel, "21") }, errdefs.ErrInvalid},
		{"scale.min 2^64-1", nil, func(r *types.FunctionDeployment) { r.Labels = labels(scaleMinLabel, "18446744073709551615") }, errdefs.ErrInvalid},
		{"scale.min above scale.max", nil, func(r *types.FunctionDeployment) {
			r.Labels = labels(scaleMinLabel, "3", funcspec.LabelScaleMax, "2")
		}, errdefs.ErrInvalid},
		{"bad scale.max", nil, func(r *types.FunctionDeployment) { r.Labels = labels(funcspec.LabelScaleMax, "two") }, errdefs.ErrInvalid},
		{"memory limit 2^63", nil, func(r *types.FunctionDeployment) {
			r.Limits = &types.FunctionResources{Memory: "9223372036854775808"}
		}, errdefs.ErrInvalid},
		{"remote upstream_url", nil, func(r *types.FunctionDeployment) {
			r.EnvVars = map[string]string{"upstream_url": "http://10.0.0.1:80"}
		}, errdefs.ErrInvalid},
		{"bad constraint", nil, func(r *types.FunctionDeployment) { r.Constraints = []string{"amd64"} }, errdefs.ErrInvalid},
		{"unknown namespace", nil, func(r *types.FunctionDeployment) { r.Namespace = "elsewhere" }, errdefs.ErrInvalid},
		{"namespace not annotated", func(_ *Backend, c *fake.Clientset) {
			_, _ = c.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}, metav1.CreateOptions{})
		}, func(r *types.FunctionDeployment) { r.Namespace = "plain" }, errdefs.ErrInvalid},
		{"service create fails", func(_ *Backend, c *fake.Clientset) {
			c.PrependReactor("create", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewInternalError(errors.New("etcd is down"))
			})
		}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackend(t)
			if tt.setup != nil {
				tt.setup(b, client)
			}
			before, _ := client.AppsV1().Deployments("").List(context.Background(), metav1.ListOptions{})
			req := base()
			if tt.req != nil {
				tt.req(&req)
			}
			err := b.Deploy(ctxT(t), req)
			if err == nil {
				t.Fatal("deploy succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			after, _ := client.AppsV1().Deployments("").List(context.Background(), metav1.ListOptions{})
			if len(after.Items) != len(before.Items) {
				t.Errorf("a failed deploy left %d deployments behind", len(after.Items)-len(before.Items))
			}
		})
	}
}

func TestDeployToAnnotatedNamespace(t *testing.T) {
	b, client := newBackendWith(t, func(c *Config) { c.ClusterRole = true },
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Annotations: map[string]string{"openfaas": "1"}}})
	if err := b.Deploy(ctxT(t), types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run", Namespace: "team-a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.AppsV1().Deployments("team-a").Get(context.Background(), "fn", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestUpdate(t *testing.T) {
	b, client := newBackend(t, managedSecret("api-key", "v"), registrySecret())
	ctx := ctxT(t)
	req := fullRequest()
	if err := b.Deploy(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := b.Scale(ctx, testNS, "counter", 5); err != nil {
		t.Fatal(err)
	}
	req.Image = "ghcr.io/me/counter-pypy:0.3"
	req.EnvVars = map[string]string{"mode": "fast"}
	req.Secrets = nil
	req.Labels = labels("team", "b")
	req.Limits = &types.FunctionResources{Memory: "512Mi"}
	req.ReadOnlyRootFilesystem = false
	if err := b.Update(ctx, req); err != nil {
		t.Fatal(err)
	}
	d := getDeployment(t, client, "counter")
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "ghcr.io/me/counter-pypy:0.3" {
		t.Errorf("image = %s", c.Image)
	}
	env := envMap(c.Env)
	if env["mode"] != "fast" || env["write_debug"] != "" || env["fprocess"] != "pypy3 index.py" {
		t.Errorf("env = %v, want mode=fast, write_debug gone", env)
	}
	if len(d.Spec.Template.Spec.Volumes) != 1 || len(d.Spec.Template.Spec.ImagePullSecrets) != 0 {
		t.Errorf("secrets not removed: volumes %+v, pull secrets %+v", d.Spec.Template.Spec.Volumes, d.Spec.Template.Spec.ImagePullSecrets)
	}
	if d.Spec.Template.Labels["team"] != "b" || c.Resources.Limits.Memory().String() != "512Mi" {
		t.Errorf("labels %v, limits %v", d.Spec.Template.Labels, c.Resources.Limits)
	}
	if *d.Spec.Replicas != 5 {
		t.Errorf("update changed replicas to %d, want 5 kept", *d.Spec.Replicas)
	}

	missing := req
	missing.Service = "nope"
	if err := b.Update(ctx, missing); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("update of a missing function: err = %v, want ErrNotFound", err)
	}
	bad := req
	bad.Limits = &types.FunctionResources{CPU: "many"}
	if err := b.Update(ctx, bad); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("update with bad limits: err = %v, want ErrInvalid", err)
	}
}

func TestDelete(t *testing.T) {
	foreign := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "not-a-function", Namespace: testNS}}
	b, client := newBackend(t, foreign)
	ctx := ctxT(t)
	if err := b.Deploy(ctx, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "", "fn"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.AppsV1().Deployments(testNS).Get(ctx, "fn", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deployment still there: %v", err)
	}
	if _, err := client.CoreV1().Services(testNS).Get(ctx, "fn", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("service still there: %v", err)
	}
	for _, name := range []string{"fn", "not-a-function"} {
		if err := b.Delete(ctx, testNS, name); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("delete %s: err = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := client.AppsV1().Deployments(testNS).Get(ctx, "not-a-function", metav1.GetOptions{}); err != nil {
		t.Errorf("a deployment without faas_function was deleted: %v", err)
	}
}

func TestScale(t *testing.T) {
	b, client := newBackend(t)
	ctx := ctxT(t)
	if err := b.Deploy(ctx, types.FunctionDeployment{Service: "fn", Image: "img", EnvProcess: "run"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{3, 0, 1} {
		if err := b.Scale(ctx, testNS, "fn", n); err != nil {
			t.Fatal(err)
		}
		if got := *getDeployment(t, client, "fn").Spec.Replicas; uint64(got) != n {
			t.Errorf("replicas = %d, want %d", got, n)
		}
	}
	if err := b.Scale(ctx, testNS, "nope", 1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("scale of a missing function: err = %v", err)
	}
	for _, n := range []uint64{21, 1 << 40, 1 << 63, 1<<64 - 1} {
		if err := b.Scale(ctx, testNS, "fn", n); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("scale to %d, beyond the provider's maximum: err = %v", n, err)
		}
	}
	if got := *getDeployment(t, client, "fn").Spec.Replicas; got != 1 {
		t.Errorf("a refused scale changed replicas to %d", got)
	}
}

func TestScaleHonoursScaleMax(t *testing.T) {
	b, client := newBackend(t)
	ctx := ctxT(t)
	if err := b.Deploy(ctx, types.FunctionDeployment{Service: "fn", Image: "img", Labels: labels(funcspec.LabelScaleMax, "3")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Scale(ctx, testNS, "fn", 3); err != nil {
		t.Fatal(err)
	}
	err := b.Scale(ctx, testNS, "fn", 4)
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), funcspec.LabelScaleMax) {
		t.Errorf("scale above com.openfaas.scale.max: err = %v", err)
	}
	if got := *getDeployment(t, client, "fn").Spec.Replicas; got != 3 {
		t.Errorf("replicas = %d, want 3", got)
	}
}

func TestMaxReplicasConfig(t *testing.T) {
	client := fake.NewClientset()
	if _, err := New(client, Config{AgentImage: testAgent, MaxReplicas: 1 << 31}); err == nil {
		t.Error("max replicas beyond int32 accepted")
	}
	b, err := New(client, Config{AgentImage: testAgent, MaxReplicas: 50, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx := ctxT(t)
	if err := b.Deploy(ctx, types.FunctionDeployment{Service: "fn", Image: "img", Labels: labels(scaleMinLabel, "40")}); err != nil {
		t.Fatal(err)
	}
	if got := *getDeployment(t, client, "fn").Spec.Replicas; got != 40 {
		t.Errorf("replicas = %d, want 40 from scale.min", got)
	}
	if err := b.Scale(ctx, testNS, "fn", 50); err != nil {
		t.Error(err)
	}
	if err := b.Scale(ctx, testNS, "fn", 51); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("scale beyond the configured maximum: err = %v", err)
	}
}

// TestScaleMinFaasNetesSemantics: a scale.min that is not a positive
// integer is ignored, not refused, as faas-netes does.
func TestScaleMinFaasNetesSemantics(t *testing.T) {
	for v, want := range map[string]int32{"2": 2, "0": 1, "-1": 1, "two": 1, "1e3": 1, "": 1} {
		t.Run(v, func(t *testing.T) {
			b, client := newBackend(t)
			if err := b.Deploy(ctxT(t), types.FunctionDeployment{Service: "fn", Image: "img", Labels: labels(scaleMinLabel, v)}); err != nil {
				t.Fatal(err)
			}
			if got := *getDeployment(t, client, "fn").Spec.Replicas; got != want {
				t.Errorf("replicas = %d, want %d", got, want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	b, client := newBackend(t, managedSecret("api-key", "v"), registrySecret(),
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "not-a-function", Namespace: testNS}})
	ctx := ctxT(t)
	req := fullRequest()
	if err := b.Deploy(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := b.Deploy(ctx, types.FunctionDeployment{Service: "another", Image: "img", EnvProcess: "run"}); err != nil {
		t.Fatal(err)
	}
	d := getDeployment(t, client, "counter")
	d.Status.AvailableReplicas = 1
	if _, err := client.AppsV1().Deployments(testNS).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	st, err := b.Function(ctx, testNS, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "counter" || st.Namespace != testNS || st.Image != req.Image || st.EnvProcess != req.EnvProcess {
		t.Errorf("status = %+v", st)
	}
	if st.Replicas != 2 || st.AvailableReplicas != 1 {
		t.Errorf("replicas %d available %d, want 2 and 1", st.Replicas, st.AvailableReplicas)
	}
	if !maps.Equal(st.EnvVars, req.EnvVars) {
		t.Errorf("envVars = %v, want %v (no fprocess, no PRONGHORN_*)", st.EnvVars, req.EnvVars)
	}
	if !maps.Equal(*st.Labels, *req.Labels) {
		t.Errorf("labels = %v, want %v", *st.Labels, *req.Labels)
	}
	if (*st.Annotations)["topic"] != "orders" {
		t.Errorf("annotations = %v", *st.Annotations)
	}
	if !slices.Equal(st.Secrets, []string{"api-key", "registry"}) {
		t.Errorf("secrets = %v", st.Secrets)
	}
	if !slices.Equal(st.Constraints, []string{"kubernetes.io/arch=amd64"}) {
		t.Errorf("constraints = %v", st.Constraints)
	}
	if st.Limits == nil || st.Limits.Memory != "256Mi" || st.Limits.CPU != "500m" || st.Requests == nil || st.Requests.Memory != "128Mi" {
		t.Errorf("limits %+v requests %+v", st.Limits, st.Requests)
	}
	if !st.ReadOnlyRootFilesystem || st.CreatedAt.IsZero() && !d.CreationTimestamp.IsZero() {
		t.Errorf("readOnly %v createdAt %v", st.ReadOnlyRootFilesystem, st.CreatedAt)
	}
	if !st.CreatedAt.Equal(d.CreationTimestamp.Time) {
		t.Errorf("createdAt = %v, want the deployment's %v", st.CreatedAt, d.CreationTimestamp.Time)
	}

	list, err := b.Functions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range list {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"another", "counter"}) {
		t.Errorf("functions = %v, want another, counter", names)
	}
	if _, err := b.Function(ctx, testNS, "not-a-function"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("status of a plain deployment: err = %v", err)
	}
	if _, err := b.Function(ctx, testNS, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("status of a missing function: err = %v", err)
	}
}

func TestNamespaces(t *testing.T) {
	ns := func(name string, ann map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
	}
	tests := []struct {
		name      string
		objs      []runtime.Object
		forbidden bool
		want      []string
	}{
		{"default only", nil, false, []string{testNS}},
		{"annotated ones", []runtime.Object{
			ns("team-a", map[string]string{"openfaas": "1"}),
			ns("team-b", map[string]string{"openfaas": "true"}),
			ns("team-c", map[string]string{"openfaas": "0"}),
			ns("kube-system", nil),
			ns(testNS, map[string]string{"openfaas": "1"}),
		}, false, []string{testNS, "team-a", "team-b"}},
		{"no permission to list", []runtime.Object{ns("team-a", map[string]string{"openfaas": "1"})}, true, []string{testNS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, client := newBackendWith(t, func(c *Config) { c.ClusterRole = true }, tt.objs...)
			if tt.forbidden {
				client.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "", errors.New("role, not cluster role"))
				})
			}
			got, err := b.Namespaces(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("namespaces = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	unmanaged := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "provider-auth", Namespace: testNS}, Data: map[string][]byte{"x": []byte("y")}}
	b, client := newBackend(t, unmanaged)
	ctx := ctxT(t)
	value := func(name string) string {
		s, err := client.CoreV1().Secrets(testNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data[name])
	}

	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"create", func() error { return b.CreateSecret(ctx, types.Secret{Name: "api-key", Value: "one"}) }, nil},
		{"create raw", func() error { return b.CreateSecret(ctx, types.Secret{Name: "cert", RawValue: []byte{0, 1, 2}}) }, nil},
		{"create again", func() error { return b.CreateSecret(ctx, types.Secret{Name: "api-key", Value: "x"}) }, errdefs.ErrAlreadyExists},
		{"create over unmanaged", func() error { return b.CreateSecret(ctx, types.Secret{Name: "provider-auth", Value: "x"}) }, errdefs.ErrAlreadyExists},
		{"create in unknown namespace", func() error {
			return b.CreateSecret(ctx, types.Secret{Name: "k", Namespace: "elsewhere", Value: "x"})
		}, errdefs.ErrInvalid},
		{"update", func() error {
			return b.UpdateSecret(ctx, types.Secret{Name: "api-key", Namespace: testNS, Value: "two"})
		}, nil},
		{"update missing", func() error { return b.UpdateSecret(ctx, types.Secret{Name: "nope", Value: "x"}) }, errdefs.ErrNotFound},
		{"update unmanaged", func() error { return b.UpdateSecret(ctx, types.Secret{Name: "provider-auth", Value: "x"}) }, errdefs.ErrNotFound},
		{"delete unmanaged", func() error { return b.DeleteSecret(ctx, testNS, "provider-auth") }, errdefs.ErrNotFound},
		{"delete", func() error { return b.DeleteSecret(ctx, "", "cert") }, nil},
		{"delete missing", func() error { return b.DeleteSecret(ctx, testNS, "cert") }, errdefs.ErrNotFound},
	}
	for _, s := range steps {
		err := s.do()
		if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.want)
		}
	}
	if v := value("api-key"); v != "two" {
		t.Errorf("api-key = %q, want two", v)
	}
	if v := value("provider-auth"); v != "" {
		t.Errorf("unmanaged secret changed")
	}
	list, err := b.Secrets(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "api-key" || list[0].Namespace != testNS || list[0].Value != "" || list[0].RawValue != nil {
		t.Errorf("secrets = %+v, want api-key only, names only", list)
	}
	s, _ := client.CoreV1().Secrets(testNS).Get(ctx, "api-key", metav1.GetOptions{})
	if s.Labels[managedByLabel] != managedByValue || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("secret labels %v type %s", s.Labels, s.Type)
	}
}

func TestResourcesQuantities(t *testing.T) {
	r, err := resources(&types.FunctionResources{Memory: "1Gi", NvidiaGPU: "1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q := r.Limits["nvidia.com/gpu"]; q.Cmp(resource.MustParse("1")) != 0 {
		t.Errorf("gpu limit = %v", q.String())
	}
	if r.Requests != nil {
		t.Errorf("requests = %v, want none", r.Requests)
	}
	if !strings.Contains(func() string { _, err := resources(nil, &types.FunctionResources{Memory: "x"}); return err.Error() }(), "requests.memory") {
		t.Error("error does not name the field")
	}
}
