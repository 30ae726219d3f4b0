package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type functionJSON struct {
	FProcess string `json:"fprocess"`
	Runtime  string `json:"runtime"`
}

// Every catalog benchmark has a function.json naming the runtime the
// catalog expects, so the driver's intervals match what the provider runs.
func TestCatalogMatchesFunctionDirs(t *testing.T) {
	for name, rt := range Catalog() {
		data, err := os.ReadFile(filepath.Join(repoRoot(t), "benchmarks", "functions", name, "function.json"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var fj functionJSON
		if err := json.Unmarshal(data, &fj); err != nil || fj.Runtime != rt || fj.FProcess == "" {
			t.Errorf("%s: function.json %s (err %v), want runtime %s", name, data, err, rt)
		}
	}
	if len(CatalogNames()) != len(Catalog()) {
		t.Errorf("CatalogNames has %d entries, Catalog %d", len(CatalogNames()), len(Catalog()))
	}
}

// TestBenchmarkFunctionsSmoke starts each benchmark as the agent would
// (its fprocess in its directory, upstream_url on a free port) and checks
// three requests answer JSON with server_us, the last with a mutability.
func TestBenchmarkFunctionsSmoke(t *testing.T) {
	for _, name := range CatalogNames() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(repoRoot(t), "benchmarks", "functions", name)
			data, err := os.ReadFile(filepath.Join(dir, "function.json"))
			if err != nil {
				t.Fatal(err)
			}
			var fj functionJSON
			if err := json.Unmarshal(data, &fj); err != nil {
				t.Fatal(err)
			}
			argv := strings.Fields(fj.FProcess)
			if _, err := exec.LookPath(argv[0]); err != nil {
				t.Skipf("needs %s for the %s runtime", argv[0], fj.Runtime)
			}
			if fj.Runtime == "jvm" {
				// Compile into a temp dir: the tree's classes belong to
				// scripts/setup.sh, and a test must not write there.
				if _, err := exec.LookPath("javac"); err != nil {
					t.Skip("needs javac")
				}
				classes := t.TempDir()
				if out, err := exec.Command("javac", "-d", classes, filepath.Join(dir, "Handler.java")).CombinedOutput(); err != nil {
					t.Fatalf("javac: %v\n%s", err, out)
				}
				dir = classes
			}
			port := freePort(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), fmt.Sprintf("upstream_url=http://127.0.0.1:%d", port))
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cancel()
				cmd.Wait()
			}()
			base := fmt.Sprintf("http://127.0.0.1:%d/", port)
			queries := []string{"", "seed=1", "seed=2&mutability=0.3"}
			for i, q := range queries {
				var resp *http.Response
				// The first call also waits for the runtime to listen.
				for deadline := time.Now().Add(30 * time.Second); ; {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"?"+q, strings.NewReader("ignored body"))
					resp, err = http.DefaultClient.Do(req)
					if err == nil || i > 0 || time.Now().After(deadline) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					t.Fatalf("request %d: %v\n%s", i, err, logs.String())
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var reply map[string]any
				if resp.StatusCode != 200 || json.Unmarshal(body, &reply) != nil {
					t.Fatalf("request %d: %s %s", i, resp.Status, body)
				}
				if us, ok := reply["server_us"].(float64); !ok || us <= 0 {
					t.Fatalf("request %d: no positive server_us in %s", i, body)
				}
			}
		})
	}
}
