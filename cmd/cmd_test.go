package cmd

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/pronghorn-openfaas/pronghorn/funcspec"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

func TestRunChecksVerdict(t *testing.T) {
	pass := func(context.Context) (string, error) { return "fine", nil }
	fail := func(context.Context) (string, error) { return "", errors.New("broken") }
	for _, tc := range []struct {
		name   string
		checks []check
		ok     bool
		want   []string
	}{
		{"all pass", []check{{"a", true, pass}, {"b", false, pass}}, true, []string{"ok  a", "can run here"}},
		{"optional fails", []check{{"a", true, pass}, {"b", false, fail}}, true, []string{"warn  b  broken", "can run here"}},
		{"required fails", []check{{"a", true, fail}, {"b", false, pass}}, false, []string{"FAIL  a  broken", "cannot run here"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if got := runChecks(context.Background(), &buf, tc.checks); got != tc.ok {
				t.Errorf("verdict %v, want %v", got, tc.ok)
			}
			out := strings.Join(strings.Fields(buf.String()), " ")
			for _, w := range tc.want {
				if !strings.Contains(out, strings.Join(strings.Fields(w), " ")) {
					t.Errorf("output %q lacks %q", buf.String(), w)
				}
			}
		})
	}
}

func TestRuntimeCheckMissingBinary(t *testing.T) {
	_, err := runtimeCheck("no-such-runtime-xyz", "--version").run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("err = %v", err)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("read_timeout", "15")
	t.Setenv("basic_auth", "true")
	t.Setenv("strategy", "bandit")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var d time.Duration
	var auth bool
	var o snapshotOptions
	if err := envDuration(fs, &d, "read-timeout", "read_timeout", time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	if err := envBool(fs, &auth, "basic-auth", "basic_auth", false, ""); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(o.flags(fs)...); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--evict-after", "4"}); err != nil {
		t.Fatal(err)
	}
	if d != 15*time.Second || !auth || o.engine.Strategy != "bandit" || o.engine.EvictAfter != 4 {
		t.Errorf("got timeout %s auth %v engine %+v", d, auth, o.engine)
	}
	// An explicit flag wins over the environment.
	if err := fs.Parse([]string{"--strategy", "cold"}); err != nil || o.engine.Strategy != "cold" {
		t.Errorf("flag over env: %q %v", o.engine.Strategy, err)
	}

	t.Setenv("write_timeout", "soon")
	if err := envDuration(pflag.NewFlagSet("u", pflag.ContinueOnError), &d, "write-timeout", "write_timeout", time.Minute, ""); err == nil {
		t.Error("a bad duration in the environment was accepted")
	}
}

func TestMaxReplicasFlag(t *testing.T) {
	cmd := newProviderCommand(BuildInfo{})
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if f := cmd.Flags().Lookup("max-replicas"); f == nil || f.DefValue != "20" {
		t.Fatalf("--max-replicas default = %v", f)
	}

	t.Setenv("max_replicas", "50")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var n uint64
	if err := envUint64(fs, &n, "max-replicas", "max_replicas", funcspec.DefaultMaxReplicas, ""); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil || n != 50 {
		t.Errorf("from env: %d, %v", n, err)
	}
	if err := fs.Parse([]string{"--max-replicas", "7"}); err != nil || n != 7 {
		t.Errorf("flag over env: %d, %v", n, err)
	}
	if err := fs.Parse([]string{"--max-replicas", "-1"}); err == nil {
		t.Error("--max-replicas -1 accepted")
	}
	for _, bad := range []string{"-1", "abc", "1e3", "", "18446744073709551616"} {
		t.Setenv("max_replicas", bad)
		if err := envUint64(pflag.NewFlagSet("u", pflag.ContinueOnError), &n, "max-replicas", "max_replicas", 20, ""); err == nil {
			t.Errorf("env max_replicas=%q accepted", bad)
		}
	}

	for n, ok := range map[uint64]bool{0: false, 1: true, 20: true, 1<<31 - 1: true, 1 << 31: false, 1 << 63: false, 1<<64 - 1: false} {
		if err := checkMaxReplicas(n); (err == nil) != ok {
			t.Errorf("checkMaxReplicas(%d) = %v", n, err)
		}
	}
}

func TestPrintState(t *testing.T) {
	var buf bytes.Buffer
	printState(&buf, "counter", orchestrator.State{
		Strategy: "request-centric", Config: orchestrator.DefaultConfig(),
		Pool:     []orchestrator.PoolEntry{{Key: "openfaas-fn/counter/r00007-ab", RequestNumber: 7, SizeBytes: 9_000_000, Score: 812.5}},
		Weights:  []float64{1500, 900, 0, 400},
		Restores: 3, Checkpoints: 1,
	})
	out := buf.String()
	for _, want := range []string{"request-centric", "restores", "9.0 MB", "r00007-ab", "1:", "1500", "4:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, " 3: ") {
		t.Errorf("unobserved weight printed:\n%s", out)
	}
}
