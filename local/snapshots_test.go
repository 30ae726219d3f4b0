package local

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// snapshotEnv is a backend with the engine and a directory store, running
// the real sample functions under benchmarks/functions with real CRIU.
func snapshotEnv(t *testing.T, runtimeBin string) (*env, *orchestrator.Engine, *snapshot.DirStore, string) {
	t.Helper()
	requireRoot(t)
	criu := os.Getenv("PRONGHORN_CRIU")
	if criu == "" {
		criu = snapshot.DefaultCRIUPath
	}
	if _, err := os.Stat(criu); err != nil {
		t.Skipf("needs CRIU at %s (scripts/install-criu.sh): %v", criu, err)
	}
	if _, err := exec.LookPath(runtimeBin); err != nil {
		t.Skipf("needs %s for the sample function (scripts/setup.sh)", runtimeBin)
	}
	storeDir := t.TempDir()
	store, err := snapshot.NewDirStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	engineDB, err := bolt.Open(filepath.Join(t.TempDir(), "engine.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engineDB.Close() })
	engine, err := orchestrator.Open(engineDB)
	if err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	functions := filepath.Join(filepath.Dir(filepath.Dir(file)), "benchmarks", "functions")
	e := newEnv(t, func(c *Config) {
		c.FunctionsDir = functions
		c.Engine, c.Store, c.CRIUPath = engine, store, criu
		c.ReadyTimeout = 30 * time.Second
	})
	return e, engine, store, storeDir
}

func counterOf(t *testing.T, body string) int {
	t.Helper()
	var r struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("reply %q: %v", body, err)
	}
	return r.Count
}

// A fixed(3) strategy with eviction after 5 requests: the first worker is
// checkpointed at its 3rd request and evicted after its 5th; the next worker
// restores that snapshot and so continues the counter at 4, not 1.
func TestCheckpointEvictRestore(t *testing.T) {
	for _, tc := range []struct{ image, bin, needs string }{
		{"counter-pypy", "pypy3", ""},
		{"counter-jvm", "java", "Handler.class"},
		{"counter-node", "node", ""},
	} {
		t.Run(tc.image, func(t *testing.T) {
			e, engine, _, _ := snapshotEnv(t, tc.bin)
			if tc.needs != "" {
				if _, err := os.Stat(filepath.Join(e.b.cfg.FunctionsDir, tc.image, tc.needs)); err != nil {
					t.Skipf("%s not built (scripts/setup.sh compiles it): %v", tc.needs, err)
				}
			}
			ctx := context.Background()
			err := e.b.Deploy(ctx, types.FunctionDeployment{Service: "c", Image: tc.image, Annotations: &map[string]string{
				"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "3", "com.pronghorn.evict-after": "5",
			}})
			if err != nil {
				t.Fatal(err)
			}
			for want := 1; want <= 5; want++ {
				body, err := e.invoke("c")
				if err != nil {
					t.Fatal(err)
				}
				if got := counterOf(t, body); got != want {
					t.Fatalf("request %d: count %d", want, got)
				}
				if want == 3 {
					eventually(t, "the checkpoint", func() bool {
						st, _ := engine.Inspect(ctx, "openfaas-fn/c")
						return st.Checkpoints+st.FailedCheckpoints > 0
					})
				}
			}
			st, _ := engine.Inspect(ctx, "openfaas-fn/c")
			if st.Checkpoints != 1 || len(st.Pool) != 1 || st.Pool[0].RequestNumber != 3 {
				t.Fatalf("after checkpoint: %+v", st)
			}
			// The 6th request goes to the replacement, restored at request 3.
			body, err := e.invoke("c")
			if err != nil {
				t.Fatal(err)
			}
			if got := counterOf(t, body); got != 4 {
				t.Fatalf("restored worker answered count %d, want 4 (%s)", got, body)
			}
			st, _ = engine.Inspect(ctx, "openfaas-fn/c")
			if st.Restores != 1 || st.FailedRestores != 0 {
				t.Errorf("counters: %+v", st)
			}
		})
	}
}

// A corrupt snapshot is refused before anything is restored: the worker
// starts cold, and the snapshot leaves the pool and the store.
func TestCorruptSnapshotFallsBackToCold(t *testing.T) {
	e, engine, store, storeDir := snapshotEnv(t, "node")
	ctx := context.Background()
	err := e.b.Deploy(ctx, types.FunctionDeployment{Service: "c", Image: "counter-node", Annotations: &map[string]string{
		"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "2", "com.pronghorn.evict-after": "3",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := e.invoke("c"); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			eventually(t, "the checkpoint", func() bool {
				st, _ := engine.Inspect(ctx, "openfaas-fn/c")
				return st.Checkpoints > 0
			})
		}
	}
	st, _ := engine.Inspect(ctx, "openfaas-fn/c")
	if len(st.Pool) != 1 {
		t.Fatalf("pool: %+v", st.Pool)
	}
	key := st.Pool[0].Key
	corruptObject(t, storeDir, key)

	body, err := e.invoke("c")
	if err != nil {
		t.Fatal(err)
	}
	if got := counterOf(t, body); got != 1 {
		t.Fatalf("worker after a corrupt snapshot answered count %d, want a cold 1", got)
	}
	st, _ = engine.Inspect(ctx, "openfaas-fn/c")
	if st.FailedRestores != 1 || len(st.Pool) != 0 {
		t.Errorf("after corrupt restore: %+v", st)
	}
	if _, err := store.Stat(ctx, key); err == nil {
		t.Error("corrupt snapshot still in the store")
	}
}

// corruptObject flips a byte in the middle of the stored object.
func corruptObject(t *testing.T, root, key string) {
	t.Helper()
	var target string
	filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && info.Size() > 1024 && target == "" {
			target = path
		}
		return nil
	})
	if target == "" {
		t.Fatalf("no object file for %s", key)
	}
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	b := make([]byte, 1)
	off := info.Size() / 2
	f.ReadAt(b, off)
	b[0] ^= 0xff
	f.WriteAt(b, off)
}
