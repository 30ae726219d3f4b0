package local

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/sandbox/network"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

// BenchmarkSandboxCost prices the sandbox (private root, unprivileged
// user, seccomp, egress network) against unconfined workers, on the Node
// counter, in one run: a cold start and a restore (scale from zero to the
// first answer) and a warm call.
//
//	sudo go test -run '^$' -bench SandboxCost -benchtime 30x ./local/
func BenchmarkSandboxCost(b *testing.B) {
	criu := snapshottest.CRIU(b)
	if _, err := exec.LookPath("node"); err != nil {
		b.Skip("needs node for the sample function")
	}
	for _, mode := range []struct {
		name           string
		sandboxed, net bool
	}{{"unconfined", false, false}, {"root-only", true, false}, {"sandboxed", true, true}} {
		open := func(b *testing.B) *env {
			return newEnv(b, func(c *Config, db *bolt.DB) {
				engine, err := orchestrator.Open(db)
				if err != nil {
					b.Fatal(err)
				}
				store, err := snapshot.NewDirStore(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				_, file, _, _ := runtime.Caller(0)
				c.FunctionsDir = filepath.Join(filepath.Dir(filepath.Dir(file)), "benchmarks", "functions")
				c.Engine, c.Store, c.CRIUPath = engine, store, criu
				c.Sandbox = mode.sandboxed
				if mode.net {
					// Its own subnet and names: other tests' providers may
					// run on this host meanwhile.
					c.Network = &network.Config{Subnet: netip.MustParsePrefix("10.66.0.0/16"), HostIfPrefix: "pbe", Table: "pronghorn-pbe"}
				}
			})
		}
		// startLatency scales c to zero, then times the first call, which
		// starts a worker as the strategy plans it.
		startLatency := func(b *testing.B, e *env, check func(count int)) {
			ctx := context.Background()
			for range b.N {
				b.StopTimer()
				if err := e.b.Scale(ctx, "openfaas-fn", "c", 0); err != nil {
					b.Fatal(err)
				}
				eventually(b, "no worker", func() bool { return workerCount(e.b, "c") == 0 })
				b.StartTimer()
				check(e.count())
			}
		}
		b.Run(mode.name+"/cold-start", func(b *testing.B) {
			e := open(b)
			e.deployCounter("counter-node", map[string]string{"strategy": orchestrator.StrategyCold})
			e.count()
			startLatency(b, e, func(count int) {
				if count != 1 {
					b.Fatalf("a cold worker answered %d", count)
				}
			})
		})
		b.Run(mode.name+"/restore", func(b *testing.B) {
			e := open(b)
			e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "1"})
			e.count()
			eventually(b, "the checkpoint", func() bool { return len(e.inspect().Pool) == 1 })
			startLatency(b, e, func(count int) {
				if count != 2 {
					b.Fatalf("a worker answered %d, not restored from the request-1 snapshot", count)
				}
			})
		})
		b.Run(mode.name+"/invoke", func(b *testing.B) {
			e := open(b)
			e.deployCounter("counter-node", map[string]string{"strategy": orchestrator.StrategyCold})
			e.count()
			time.Sleep(100 * time.Millisecond)
			b.ResetTimer()
			for range b.N {
				e.count()
			}
		})
	}
}
