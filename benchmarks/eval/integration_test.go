package eval

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const defaultCRIU = "/opt/pronghorn/criu/bin/criu"

// copyDir copies the regular files of src (one level) into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPipelineAgainstRealProvider runs the whole evaluation pipeline on a
// tiny grid against the real provider binary with real CRIU: one PyPy and
// one JVM benchmark, every strategy at E=4, a warm-up run and a probe per
// benchmark, CPU sampled from /proc and freeze times read from the
// provider's log; then a rerun that must resume with nothing left to do,
// and the report. It asserts that everything is recorded and the report is
// well formed, never what the latencies are: this machine's timings are
// not the test's business.
func TestPipelineAgainstRealProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the real-provider pipeline takes about a minute")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the provider runs workers in their own namespaces")
	}
	for _, bin := range []string{"pypy3", "java", "javac", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
	criu := os.Getenv("PRONGHORN_CRIU")
	if criu == "" {
		criu = defaultCRIU
	}
	if _, err := os.Stat(criu); err != nil {
		t.Skipf("needs CRIU at %s (scripts/install-criu.sh, or set PRONGHORN_CRIU)", criu)
	}

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "pronghorn")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// A private functions dir, with the JVM handler compiled there, so the
	// test needs no prior scripts/setup.sh and writes nothing in the tree.
	functions := filepath.Join(tmp, "functions")
	benches := []string{"bfs", "simple-hash"}
	for _, b := range benches {
		copyDir(t, filepath.Join(repoRoot(t), "benchmarks", "functions", b), filepath.Join(functions, b))
	}
	jvmDir := filepath.Join(functions, "simple-hash")
	if out, err := exec.Command("javac", "-d", jvmDir, filepath.Join(jvmDir, "Handler.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}

	port := freePort(t)
	logPath := filepath.Join(tmp, "provider.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	prov := exec.Command(bin, "provider", "--port", strconv.Itoa(port), "--data-dir", filepath.Join(tmp, "data"),
		"--functions-dir", functions, "--criu", criu,
		// Worker network settings of its own: other tests' providers may
		// run on this host now.
		"--worker-interface-prefix", "pev", "--worker-subnet", "10.202.0.0/16")
	prov.Stdout, prov.Stderr = logFile, logFile
	if err := prov.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prov.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { prov.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			prov.Process.Kill()
			<-done
		}
		if t.Failed() {
			logs, _ := os.ReadFile(logPath)
			t.Logf("provider log:\n%s", logs)
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider not healthy: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The provider generated its basic auth credentials before listening.
	secret := func(name string) string {
		b, err := os.ReadFile(filepath.Join(tmp, "data", "secrets", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}

	const requests, probeAt = 6, 2
	out := filepath.Join(tmp, "results")
	report := filepath.Join(tmp, "report")
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := Options{
		Gateway: url, User: secret("basic-auth-user"), Password: secret("basic-auth-password"),
		Benchmarks: benches, Strategies: AllStrategies(), Rates: []int{4}, Requests: requests, Seeds: []int64{1},
		WarmupRequests: 8, ProbeReps: 1, ProbeAt: probeAt,
		Intervals: map[string]time.Duration{"pypy": 50 * time.Millisecond, "jvm": 50 * time.Millisecond},
		OutDir:    out, ReportDir: report, Stdout: &stdout, Settle: 500 * time.Millisecond,
		ProviderPID: prov.Process.Pid, ProviderLog: logPath, CRIU: criu, Build: "test", Progress: ProgressLines,
	}
	err = Run(ctx, o)
	t.Log(stdout.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	ds, err := LoadResults(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Runs) != len(benches)*5 || len(ds.Probes) != len(benches) {
		t.Fatalf("%d runs and %d probes, want %d and %d", len(ds.Runs), len(ds.Probes), len(benches)*5, len(benches))
	}
	for _, r := range ds.Runs {
		if len(r.Samples) != r.Requests || r.Errors != 0 || !r.CPUSampled {
			t.Errorf("%s: %d of %d requests, %d errors, CPU sampled %v", r.Chunk, len(r.Samples), r.Requests, r.Errors, r.CPUSampled)
		}
		for _, s := range r.Samples {
			// The benchmarks report their lineage and worker; CPU is
			// sampled after every response.
			if s.ClientUS <= 0 || s.ServerUS <= 0 || s.Lineage < 1 || s.Served < 1 || s.CPUProviderUS < 0 || s.CPUWorkersUS < 0 {
				t.Errorf("%s: bad row %+v", r.Chunk, s)
			}
		}
		if r.Samples[0].Start != StartCold {
			t.Errorf("%s: the first worker's start is %q, want cold", r.Chunk, r.Samples[0].Start)
		}
		if r.Strategy == StrategyFixed {
			// fixed(1) at E=4 over 6 requests: a checkpoint at request 1,
			// then a second worker restored from it, or, when the upload
			// was still running as the first worker was evicted (a busy
			// machine), started cold and checkpointed in turn.
			var logged []Event
			for _, e := range r.Events {
				if e.Kind == EventCheckpoint {
					logged = append(logged, e)
				}
			}
			restored := r.Samples[4].Start == StartRestore && r.State.Restores == 1 && r.State.Checkpoints == 1
			recheckpointed := r.Samples[4].Start == StartCold && r.State.Restores == 0 && r.State.Checkpoints == 2
			if !(restored || recheckpointed) || len(r.durations(EventDump)) != int(r.State.Checkpoints) || len(logged) != int(r.State.Checkpoints) {
				t.Errorf("%s: state %+v, events %+v, 5th request start %q", r.Chunk, r.State, r.Events, r.Samples[4].Start)
				continue
			}
			// A checkpoint's request is found from the log's timing, among
			// the requests its lineage served: request 0 alone when the
			// second worker restored; request 0 or 4 when both workers
			// started cold, since a slow upload can end after the second
			// worker's first request was sent.
			for _, e := range logged {
				if e.RequestNumber != 1 || e.FrozenSeconds <= 0 || !(e.Index == 0 || (recheckpointed && e.Index == 4)) {
					t.Errorf("%s: checkpoint %+v, want request number 1 after request 0 (or 4 when the second worker started cold)", r.Chunk, e)
				}
			}
		}
	}
	for _, p := range ds.Probes {
		if len(p.Rows) != 3 {
			t.Errorf("probe %s: %+v", p.Run.Chunk, p.Rows)
			continue
		}
		for _, r := range p.Rows {
			if r.Window <= 0 || r.CPUWorkersUS < 0 {
				t.Errorf("probe %s: %+v", p.Run.Chunk, r)
			}
			if r.Kind == ProbeRestore && (r.RequestNumber != probeAt+1 || r.Seconds <= 0) {
				t.Errorf("probe %s: restore %+v, want lineage %d and a restore time", p.Run.Chunk, r, probeAt+1)
			}
		}
	}
	checkReport(t, report, benches, len(benches)*len(AllStrategies()))

	// Everything is done: a rerun deploys nothing.
	stdout.Reset()
	o.NoReport = true
	if err := Run(ctx, o); err != nil || !strings.Contains(stdout.String(), "0 to run") {
		t.Errorf("rerun: %v\n%s", err, stdout.String())
	}
}
