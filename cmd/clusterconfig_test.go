package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestClusterSettingsApply: a ConfigMap/Secret key sets the flag of the
// environment variable it names, unless a flag or the environment gave it;
// the Secret wins over the ConfigMap; refused and invalid keys are errors,
// unknown ones are not.
func TestClusterSettingsApply(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		args        []string
		cm, secret  map[string]string
		wantApplied []string
		wantErr     string
		check       func(t *testing.T, o *providerOptions)
	}{
		{
			name: "store and strategy from the ConfigMap, credentials from the Secret",
			cm:   map[string]string{"snapshot_store": "minio", "minio_endpoint": "minio.openfaas:9000", "strategy": "fixed", "evict_after": "5"},
			secret: map[string]string{
				"minio_access_key": "ak", "minio_secret_key": "sk", "minio_endpoint": "10.0.0.1:9000",
			},
			wantApplied: []string{"evict_after", "minio_access_key", "minio_endpoint", "minio_secret_key", "snapshot_store", "strategy"},
			check: func(t *testing.T, o *providerOptions) {
				s := o.snapshots
				if s.store != "minio" || s.minioEndpoint != "10.0.0.1:9000" || s.minioAccessKey != "ak" || s.minioSecretKey != "sk" ||
					s.engine.Strategy != "fixed" || s.engine.EvictAfter != 5 {
					t.Errorf("options %+v", s)
				}
			},
		},
		{
			name:        "a flag wins",
			args:        []string{"--strategy", "bandit"},
			cm:          map[string]string{"strategy": "fixed", "agent_image": "x/pronghorn:1"},
			wantApplied: []string{"agent_image"},
			check: func(t *testing.T, o *providerOptions) {
				if o.snapshots.engine.Strategy != "bandit" || o.agentImage != "x/pronghorn:1" {
					t.Errorf("strategy %q, agent image %q", o.snapshots.engine.Strategy, o.agentImage)
				}
			},
		},
		{
			name:        "the environment wins (the chart's faas-netes variables)",
			env:         map[string]string{"function_namespace": "fns"},
			cm:          map[string]string{"function_namespace": "other", "data_dir": "/tmp/pronghorn"},
			wantApplied: []string{"data_dir"},
			check: func(t *testing.T, o *providerOptions) {
				if o.namespace != "fns" || o.dataDir != "/tmp/pronghorn" {
					t.Errorf("namespace %q, data dir %q", o.namespace, o.dataDir)
				}
			},
		},
		{
			name:        "unknown keys are ignored",
			cm:          map[string]string{"no_such_setting": "1", "port": "9000"},
			wantApplied: []string{"port"},
			check: func(t *testing.T, o *providerOptions) {
				if o.port != 9000 {
					t.Errorf("port %d", o.port)
				}
			},
		},
		{name: "a bad value names its source", cm: map[string]string{"evict_after": "often"}, wantErr: "ConfigMap ns/pronghorn-config: key evict_after"},
		{name: "the backend cannot come from the cluster", cm: map[string]string{"backend": "local"}, wantErr: "key backend"},
		{name: "nor the kubeconfig", secret: map[string]string{"KUBECONFIG": "/x"}, wantErr: "Secret ns/pronghorn-store: key KUBECONFIG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cmd := newProviderCommand(BuildInfo{})
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			var objs []runtime.Object
			if tt.cm != nil {
				objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: defaultConfigMap, Namespace: "ns"}, Data: tt.cm})
			}
			if tt.secret != nil {
				data := map[string][]byte{}
				for k, v := range tt.secret {
					data[k] = []byte(v)
				}
				objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: defaultConfigSecret, Namespace: "ns"}, Data: data})
			}
			client := fake.NewClientset(objs...)
			s, err := readClusterSettings(t.Context(), client, clusterConfigOptions{configMap: defaultConfigMap, secret: defaultConfigSecret, namespace: "ns"}, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			applied, err := s.apply(cmd.Flags(), quietLog())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(applied, tt.wantApplied) {
				t.Errorf("applied %v, want %v", applied, tt.wantApplied)
			}
			tt.check(t, providerOptionsOf(t, cmd.Flags()))
		})
	}
}

// providerOptionsOf reads back the options the provider command's flags
// write to, through the flags themselves.
func providerOptionsOf(t *testing.T, fs *pflag.FlagSet) *providerOptions {
	t.Helper()
	o := &providerOptions{}
	get := func(name string) string {
		f := fs.Lookup(name)
		if f == nil {
			t.Fatalf("no flag --%s", name)
		}
		return f.Value.String()
	}
	o.snapshots.store = get("snapshot-store")
	o.snapshots.minioEndpoint = get("minio-endpoint")
	o.snapshots.minioAccessKey = get("minio-access-key")
	o.snapshots.minioSecretKey = get("minio-secret-key")
	o.snapshots.engine.Strategy = get("strategy")
	if _, err := fmt.Sscan(get("evict-after"), &o.snapshots.engine.EvictAfter); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(get("port"), &o.port); err != nil {
		t.Fatal(err)
	}
	o.agentImage = get("agent-image")
	o.namespace = get("function-namespace")
	o.dataDir = get("data-dir")
	return o
}

// TestClusterSettingsMissingOrForbidden: neither a missing object nor one
// the provider may not read stops it; another API failure does.
func TestClusterSettingsMissingOrForbidden(t *testing.T) {
	gr := schema.GroupResource{Resource: "configmaps"}
	tests := []struct {
		name    string
		err     error
		wantErr bool
	}{
		{"missing", nil, false},
		{"forbidden", apierrors.NewForbidden(gr, defaultConfigMap, errors.New("no Role")), false},
		{"API down", apierrors.NewServiceUnavailable("restarting"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			if tt.err != nil {
				client.PrependReactor("get", "*", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tt.err })
			}
			s, err := readClusterSettings(t.Context(), client, clusterConfigOptions{configMap: defaultConfigMap, secret: defaultConfigSecret, namespace: "ns"}, quietLog())
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if err == nil && len(s.values) != 0 {
				t.Errorf("settings %v from nothing", s.values)
			}
		})
	}
}

// TestSelfPod: the provider finds its own container in the upstream
// chart's gateway pod (gateway + faas-netes), in ours, and alone.
func TestSelfPod(t *testing.T) {
	tests := []struct {
		name       string
		containers []corev1.Container
		wantImage  string
		wantErr    bool
	}{
		{"upstream chart", []corev1.Container{
			{Name: "gateway", Image: "gw", Command: []string{"./gateway"}},
			{Name: "faas-netes", Image: "us:1", Command: []string{"./faas-netes"}},
		}, "us:1", false},
		{"our chart", []corev1.Container{{Name: "pronghorn", Image: "us:2"}}, "us:2", false},
		{"by command", []corev1.Container{
			{Name: "sidecar", Image: "s"}, {Name: "provider", Image: "us:3", Command: []string{"/usr/bin/pronghorn"}, Args: []string{"provider"}},
		}, "us:3", false},
		{"alone", []corev1.Container{{Name: "x", Image: "us:4"}}, "us:4", false},
		{"ambiguous", []corev1.Container{{Name: "a", Image: "a"}, {Name: "b", Image: "b"}}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "gateway-abc", Namespace: "openfaas"},
				Spec:       corev1.PodSpec{Containers: tt.containers},
				Status:     corev1.PodStatus{PodIP: "10.244.0.7"},
			}
			self, err := selfPod(context.Background(), fake.NewClientset(pod), "openfaas", "gateway-abc")
			if tt.wantErr {
				if err == nil {
					t.Fatalf("picked %+v", self)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if self.image != tt.wantImage || self.podIP != "10.244.0.7" {
				t.Errorf("got %+v", self)
			}
		})
	}
	if _, err := selfPod(context.Background(), fake.NewClientset(), "openfaas", "gone"); err == nil {
		t.Error("a missing own pod was no error")
	}
}

// TestUpstreamConfigMapKeysAreSettings: every key of the ConfigMap that
// chart/upstream/pronghorn.yaml ships sets a provider setting (an unknown
// key would be ignored with a warning, the setting silently missing).
func TestUpstreamConfigMapKeysAreSettings(t *testing.T) {
	raw, err := os.ReadFile("../chart/upstream/pronghorn.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm *corev1.ConfigMap
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var c corev1.ConfigMap
		if err := yaml.Unmarshal([]byte(doc), &c); err == nil && c.Kind == "ConfigMap" {
			cm = &c
		}
	}
	if cm == nil || len(cm.Data) == 0 {
		t.Fatal("no ConfigMap with settings in chart/upstream/pronghorn.yaml")
	}
	cmd := newProviderCommand(BuildInfo{})
	s := clusterSettings{values: cm.Data, sources: map[string]string{}, secret: map[string]bool{}}
	applied, err := s.apply(cmd.Flags(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(cm.Data) {
		t.Errorf("applied %v of %v", applied, cm.Data)
	}
}
