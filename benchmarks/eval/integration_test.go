package eval

import (
	"bytes"
	"context"
	"encoding/csv"
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

// TestEvaluationAgainstRealProvider runs the driver against the real
// provider binary with CRIU: one PyPy and one JVM benchmark, fixed and
// request-centric at E=4, and checks the CSV and that snapshots were taken
// and restored.
func TestEvaluationAgainstRealProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the real-provider evaluation takes about a minute")
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
		t.Skipf("needs CRIU at %s (scripts/install-criu.sh)", criu)
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
	var logs bytes.Buffer
	prov := exec.Command(bin, "provider", "--port", strconv.Itoa(port), "--data-dir", filepath.Join(tmp, "data"),
		"--functions-dir", functions, "--criu", criu)
	prov.Stdout, prov.Stderr = &logs, &logs
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
			t.Logf("provider log:\n%s", logs.String())
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
			t.Fatalf("provider not healthy: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	const requests = 12
	out := filepath.Join(tmp, "results")
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The provider generated its basic auth credentials before listening.
	secret := func(name string) string {
		b, err := os.ReadFile(filepath.Join(tmp, "data", "secrets", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	err := Run(ctx, Options{
		Gateway: url, User: secret("basic-auth-user"), Password: secret("basic-auth-password"),
		Benchmarks: benches, Strategies: []string{StrategyFixed, StrategyRequestCentric}, Rates: []int{4},
		Requests: requests, Intervals: map[string]time.Duration{"pypy": 100 * time.Millisecond, "jvm": 100 * time.Millisecond},
		Seed: 1, OutDir: out, Stdout: &stdout, Settle: 500 * time.Millisecond,
	})
	t.Log(stdout.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	samples, err := ReadLatencyCSV(filepath.Join(out, "latency.csv"))
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, s := range samples {
		count[s.Benchmark+"/"+s.Strategy]++
		if s.ClientUS <= 0 || s.ServerUS <= 0 || s.Rate != 4 {
			t.Errorf("bad row %+v", s)
		}
	}
	for _, b := range benches {
		for _, s := range []string{StrategyFixed, StrategyRequestCentric} {
			if count[b+"/"+s] != requests {
				t.Errorf("%s/%s: %d rows, want %d", b, s, count[b+"/"+s], requests)
			}
		}
	}

	f, err := os.Open(filepath.Join(out, "runs.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	if len(recs) != 1+len(benches)*2 {
		t.Fatalf("runs.csv has %d runs, want %d", len(recs)-1, len(benches)*2)
	}
	for _, r := range recs[1:] {
		cp, _ := strconv.Atoi(r[col["checkpoints"]])
		rs, _ := strconv.Atoi(r[col["restores"]])
		up, _ := strconv.ParseFloat(r[col["upload_bytes"]], 64)
		if cp < 1 || rs < 1 || up <= 0 {
			t.Errorf("%s/%s: checkpoints=%d restores=%d upload_bytes=%g, want snapshots taken and restored", r[col["benchmark"]], r[col["strategy"]], cp, rs, up)
		}
	}
	for _, name := range []string{"table4.md", "table5.md", "index.html", "figures/cdf-bfs-e4.svg", "figures/cdf-simple-hash-e4.svg"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("missing %s", name)
		}
	}
}
