package cmd

import (
	"errors"
	"math"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pronghorn-openfaas/pronghorn/k8s"
)

// TestKubeFunctionFlags: faas-netes' function settings, read from the
// environment variables faas-netes reads, an explicit flag winning.
func TestKubeFunctionFlags(t *testing.T) {
	ce := k8s.DefaultProbeConfig()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    kubeFunctionOptions
		wantErr bool
	}{
		{"defaults", nil, nil, kubeFunctionOptions{
			httpProbe: true,
			readiness: probeOptions{int(ce.InitialDelaySeconds), int(ce.TimeoutSeconds), int(ce.PeriodSeconds)},
			liveness:  probeOptions{int(ce.InitialDelaySeconds), int(ce.TimeoutSeconds), int(ce.PeriodSeconds)},
		}, false},
		{"OpenFaaS chart's environment", map[string]string{
			"http_probe": "false", "set_nonroot_user": "true", "cluster_role": "true",
			"readiness_probe_initial_delay_seconds": "0", "readiness_probe_timeout_seconds": "1", "readiness_probe_period_seconds": "1",
			"liveness_probe_initial_delay_seconds": "3", "liveness_probe_timeout_seconds": "2", "liveness_probe_period_seconds": "10",
		}, nil, kubeFunctionOptions{
			setNonRootUser: true, clusterRole: true,
			readiness: probeOptions{0, 1, 1}, liveness: probeOptions{3, 2, 10},
		}, false},
		{"flag over env", map[string]string{"readiness_probe_period_seconds": "5", "cluster_role": "true"},
			[]string{"--readiness-probe-period-seconds", "1", "--cluster-role=false"}, kubeFunctionOptions{
				httpProbe: true,
				readiness: probeOptions{2, 1, 1}, liveness: probeOptions{2, 1, 2},
			}, false},
		{"bad env number", map[string]string{"liveness_probe_timeout_seconds": "soon"}, nil, kubeFunctionOptions{}, true},
		{"bad env boolean", map[string]string{"set_nonroot_user": "maybe"}, nil, kubeFunctionOptions{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var k kubeFunctionOptions
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			err := errors.Join(k.flags(fs)...)
			if tt.wantErr {
				if err == nil {
					t.Fatal("a bad value in the environment was accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if k != tt.want {
				t.Errorf("got %+v, want %+v", k, tt.want)
			}
		})
	}
}

func TestProbeOptionsConfig(t *testing.T) {
	if got := (probeOptions{0, 1, 2}).config(); *got != (k8s.ProbeConfig{InitialDelaySeconds: 0, TimeoutSeconds: 1, PeriodSeconds: 2}) {
		t.Errorf("config = %+v", *got)
	}
	// Beyond an int32: -1, which the backend refuses, never a wrapped value.
	if got := (probeOptions{math.MaxInt32 + 3, 1, 1}).config(); got.InitialDelaySeconds != -1 {
		t.Errorf("overflowing delay became %d", got.InitialDelaySeconds)
	}
}
