package local

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
	bolt "go.etcd.io/bbolt"
)

func TestCgroupResources(t *testing.T) {
	for _, tc := range []struct {
		name        string
		limits      *types.FunctionResources
		memory      int64 // 0: none
		quota       int64 // 0: none
		wantErrPart string
	}{
		{name: "no limits: pids only", limits: nil},
		{name: "memory", limits: &types.FunctionResources{Memory: "64Mi"}, memory: 64 << 20},
		{name: "half a cpu", limits: &types.FunctionResources{CPU: "500m"}, quota: 50_000},
		{name: "two cpus", limits: &types.FunctionResources{CPU: "2"}, quota: 200_000},
		{name: "a sliver of cpu is the kernel's minimum", limits: &types.FunctionResources{CPU: "1m"}, quota: 1000},
		{name: "bad memory", limits: &types.FunctionResources{Memory: "lots"}, wantErrPart: "limits.memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := cgroupResources(tc.limits, 77)
			if tc.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrPart) {
					t.Fatalf("err = %v, want %q", err, tc.wantErrPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Pids == nil || *res.Pids.Limit != 77 {
				t.Errorf("pids = %+v, want 77", res.Pids)
			}
			if got := int64(0); res.Memory != nil {
				got = *res.Memory.Limit
				if got != tc.memory {
					t.Errorf("memory = %d, want %d", got, tc.memory)
				}
			} else if tc.memory != 0 {
				t.Errorf("no memory limit, want %d", tc.memory)
			}
			if res.CPU != nil {
				if *res.CPU.Quota != tc.quota || *res.CPU.Period != cpuPeriod {
					t.Errorf("cpu = %d/%d, want %d/%d", *res.CPU.Quota, *res.CPU.Period, tc.quota, cpuPeriod)
				}
			} else if tc.quota != 0 {
				t.Errorf("no cpu quota, want %d", tc.quota)
			}
		})
	}
}

// A worker's limits are enforced by its own cgroup: past its memory limit
// the function is killed and the worker replaced, with the reason in the
// logs; it cannot fork past its pids cap; its CPU quota is set.
func TestWorkerLimitsEnforced(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *bolt.DB) { c.PidsMax = 48 })
	ctx := context.Background()
	d := deployment("hog", nil)
	// Agent and function are this test binary, which -race makes several
	// times larger: the limit leaves them room, the big allocation not.
	d.Limits = &types.FunctionResources{Memory: "256Mi", CPU: "250m"}
	if err := e.b.Deploy(ctx, d); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("hog", 1)
	f, _ := e.b.function("openfaas-fn", "hog")
	agentPID := (*f.ready.Load())[0].cmd.Process.Pid
	if q := cgroupValue(t, agentPID, "cpu", "cpu.cfs_quota_us", "cpu.max"); !strings.HasPrefix(q, "25000") {
		t.Errorf("cpu quota %q, want 25000", q)
	}

	got, err := e.invokePath("hog", "/fork?n=200")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(got, "started "))
	if n == 0 || n >= 48 {
		t.Fatalf("forked %q with a pids cap of 48", got)
	}

	if got, err := e.invokePath("hog", "/alloc?mb=8"); err != nil || !strings.Contains(got, "allocated 8") {
		t.Fatalf("a small allocation: %q %v", got, err)
	}
	if got, err := e.invokePath("hog", "/alloc?mb=1024"); err == nil && strings.Contains(got, "allocated") {
		t.Fatalf("allocated 1 GiB under a 256Mi limit: %q", got)
	}
	eventually(t, "the out-of-memory reason in the logs", func() bool {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		ch, err := e.b.Query(lctx, logs.Request{Name: "hog"})
		if err != nil {
			return false
		}
		found := false
		for m := range ch {
			found = found || strings.Contains(m.Text, "out of memory")
		}
		return found
	})
	e.waitAvailable("hog", 1)
	if got, err := e.invokePath("hog", "/alloc?mb=8"); err != nil || !strings.Contains(got, "allocated 8") {
		t.Fatalf("the replacement worker: %q %v", got, err)
	}
}

// cgroupValue reads a control file of pid's cgroup: v1name under the v1
// controller, or v2name in the unified hierarchy.
func cgroupValue(t *testing.T, pid int, controller, v1name, v2name string) string {
	t.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case cgroups.Mode() == cgroups.Unified && parts[0] == "0":
			file = filepath.Join("/sys/fs/cgroup", parts[2], v2name)
		case cgroups.Mode() != cgroups.Unified && strings.Contains(","+parts[1]+",", ","+controller+","):
			file = filepath.Join("/sys/fs/cgroup", controller, parts[2], v1name)
		default:
			continue
		}
		v, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(v))
	}
	t.Fatalf("no %s cgroup for pid %d", controller, pid)
	return ""
}

// A worker restored from a snapshot runs in its own cgroup, with its own
// limits, not in the one the snapshot's worker had.
func TestRestoredWorkerInItsOwnCgroup(t *testing.T) {
	e, _, _ := snapshotEnv(t, "node")
	a := map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "2", "com.pronghorn.evict-after": "3"}
	d := types.FunctionDeployment{Service: "c", Image: "counter-node", Annotations: &a,
		Limits: &types.FunctionResources{Memory: "256Mi"}}
	if err := e.b.Deploy(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		e.count()
		if i == 2 {
			eventually(t, "the checkpoint", func() bool { return e.inspect().Checkpoints == 1 })
		}
	}
	if got := e.count(); got != 3 {
		t.Fatalf("not restored: count %d", got)
	}
	f, _ := e.b.function("openfaas-fn", "c")
	agent := (*f.ready.Load())[0].cmd.Process.Pid
	// A Go agent forks from any of its threads: gather every thread's
	// children.
	var fields []string
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(agent) + "/task/*/children")
	for _, task := range tasks {
		children, _ := os.ReadFile(task)
		fields = append(fields, strings.Fields(string(children))...)
	}
	if len(fields) == 0 {
		t.Fatal("the agent has no child")
	}
	fn, _ := strconv.Atoi(fields[len(fields)-1])
	agentGroup := cgroupValue(t, agent, "memory", "memory.limit_in_bytes", "memory.max")
	fnGroup := cgroupValue(t, fn, "memory", "memory.limit_in_bytes", "memory.max")
	if agentGroup != strconv.Itoa(256<<20) || fnGroup != agentGroup {
		t.Fatalf("memory limit: agent %s, restored function %s; want both %d", agentGroup, fnGroup, 256<<20)
	}
	if own, err := os.ReadFile("/proc/" + strconv.Itoa(fn) + "/cgroup"); err != nil || !strings.Contains(string(own), (*f.ready.Load())[0].id) {
		t.Fatalf("restored function's cgroups %q do not name its worker %s", own, (*f.ready.Load())[0].id)
	}
}
