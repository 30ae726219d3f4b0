package agent

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{
			name: "defaults in a pod",
			environ: []string{
				"PATH=/usr/local/bin:/usr/bin", "HOSTNAME=counter-abc", "fprocess=pypy3 index.py",
				"upstream_url=http://127.0.0.1:5000", "PRONGHORN_FUNCTION=counter.openfaas-fn",
				"PRONGHORN_PROVIDER_URL=http://pronghorn.openfaas:8080",
			},
			check: func(t *testing.T, c Config) {
				want := Config{
					Function: "counter.openfaas-fn", Process: "pypy3 index.py",
					InvokeAddr: ":8080", ControlAddr: ":8081", SecretsDir: defaultSecretsDir,
					ReadyTimeout: Duration(defaultReadyTimeout),
				}
				got := c
				got.Env = nil
				if got.Function != want.Function || got.Process != want.Process || got.InvokeAddr != want.InvokeAddr ||
					got.ControlAddr != want.ControlAddr || got.SecretsDir != want.SecretsDir ||
					got.ReadyTimeout != want.ReadyTimeout || got.CheckpointDrain != Duration(defaultCheckpointDrain) || got.Dir != "" || got.Isolated || got.InvokeSocket != "" || got.ControlSocket != "" {
					t.Errorf("config = %+v, want %+v", got, want)
				}
				wantEnv := map[string]string{
					"PATH": "/usr/local/bin:/usr/bin", "HOSTNAME": "counter-abc", "fprocess": "pypy3 index.py",
					"upstream_url": "http://127.0.0.1:5000",
				}
				if !maps.Equal(c.Env, wantEnv) {
					t.Errorf("env = %v, want %v (no PRONGHORN_* keys)", c.Env, wantEnv)
				}
				if c.ProviderURL != "http://pronghorn.openfaas:8080" || c.TokenFile != defaultTokenFile || c.PodName != "" || c.WorkDir != "" {
					t.Errorf("pod settings: provider %q, token file %q, pod %q, work dir %q", c.ProviderURL, c.TokenFile, c.PodName, c.WorkDir)
				}
			},
		},
		{
			name:    "no provider: no token file either",
			environ: []string{"fprocess=x"},
			check: func(t *testing.T, c Config) {
				if c.ProviderURL != "" || c.TokenFile != "" {
					t.Errorf("provider %q, token file %q; want neither", c.ProviderURL, c.TokenFile)
				}
			},
		},
		{
			name: "pod settings",
			environ: []string{"fprocess=x", "PRONGHORN_PROVIDER_URL=https://gw.example:8443/", "PRONGHORN_TOKEN_FILE=/run/tok",
				"PRONGHORN_POD_NAME=counter-7d9-x2", "PRONGHORN_POD_NAMESPACE=openfaas-fn", "PRONGHORN_WORK_DIR=/scratch"},
			check: func(t *testing.T, c Config) {
				if c.ProviderURL != "https://gw.example:8443/" || c.TokenFile != "/run/tok" || c.PodName != "counter-7d9-x2" ||
					c.PodNamespace != "openfaas-fn" || c.WorkDir != "/scratch" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{name: "bad provider URL", environ: []string{"fprocess=x", "PRONGHORN_PROVIDER_URL=pronghorn:8080"}, wantErr: "provider URL"},
		{
			name: "overrides",
			environ: []string{
				"fprocess=  node index.js ", "PRONGHORN_FUNCTION_DIR=/home/app", "PRONGHORN_INVOKE_ADDR=127.0.0.1:9000",
				"PRONGHORN_CONTROL_ADDR=:9001", "PRONGHORN_SECRETS_DIR=/run/secrets", "PRONGHORN_READY_TIMEOUT=45",
				"PRONGHORN_CHECKPOINT_DRAIN=500ms",
			},
			check: func(t *testing.T, c Config) {
				if c.Process != "node index.js" || c.Dir != "/home/app" || c.InvokeAddr != "127.0.0.1:9000" ||
					c.ControlAddr != ":9001" || c.SecretsDir != "/run/secrets" || time.Duration(c.ReadyTimeout) != 45*time.Second ||
					time.Duration(c.CheckpointDrain) != 500*time.Millisecond {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name:    "go duration ready timeout, later duplicate wins, malformed entries skipped",
			environ: []string{"fprocess=a", "fprocess=java -jar f.jar", "PRONGHORN_READY_TIMEOUT=1m30s", "garbage", "=x", "EMPTY="},
			check: func(t *testing.T, c Config) {
				if c.Process != "java -jar f.jar" || time.Duration(c.ReadyTimeout) != 90*time.Second {
					t.Errorf("config = %+v", c)
				}
				if v, ok := c.Env["EMPTY"]; !ok || v != "" {
					t.Errorf("EMPTY= should pass through as an empty value, env = %v", c.Env)
				}
				if len(c.Env) != 2 {
					t.Errorf("env = %v, want fprocess and EMPTY only", c.Env)
				}
			},
		},
		{name: "no fprocess", environ: []string{"PATH=/bin"}, wantErr: "fprocess is not set"},
		{name: "blank fprocess", environ: []string{"fprocess=   "}, wantErr: "fprocess is not set"},
		{name: "bad ready timeout", environ: []string{"fprocess=x", "PRONGHORN_READY_TIMEOUT=soon"}, wantErr: "PRONGHORN_READY_TIMEOUT"},
		{name: "negative ready timeout", environ: []string{"fprocess=x", "PRONGHORN_READY_TIMEOUT=-5"}, wantErr: "must be positive"},
		{name: "bad checkpoint drain", environ: []string{"fprocess=x", "PRONGHORN_CHECKPOINT_DRAIN=never"}, wantErr: "PRONGHORN_CHECKPOINT_DRAIN"},
		{name: "bad upstream_url", environ: []string{"fprocess=x", "upstream_url=::nope"}, wantErr: "upstream_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ConfigFromEnv(tt.environ)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}
