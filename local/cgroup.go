package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/openfaas/faas-provider/types"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Each worker (its agent, CRIU and the function) runs in a cgroup of its
// own below the provider's, which enforces the deployment's limits as a
// container's cgroup would: memory (an OOM kills the function and the
// worker is replaced), CPU (a CFS quota) and the number of tasks, capped
// even when no limit is asked for. containerd's cgroups library does the
// work for both the v1 (and hybrid) and the v2 layout.

// DefaultPidsMax caps the tasks of a worker that asks for no limit: enough
// for a JVM's threads, far from a fork bomb.
const DefaultPidsMax = 1024

// cpuPeriod is the CFS period the CPU quota is a share of.
const cpuPeriod = 100_000 // µs

// workerCgroup is one worker's cgroup.
type workerCgroup interface {
	add(pid int) error
	// oomKills is how many tasks the kernel killed for memory.
	oomKills() uint64
	delete() error
}

// cgroupResources turns a deployment's limits into cgroup settings.
func cgroupResources(limits *types.FunctionResources, pidsMax int64) (*specs.LinuxResources, error) {
	res := &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &pidsMax}}
	if limits == nil {
		return res, nil
	}
	if limits.Memory != "" {
		q, err := resource.ParseQuantity(limits.Memory)
		if err != nil {
			return nil, fmt.Errorf("limits.memory %q: %w", limits.Memory, err)
		}
		bytes := q.Value()
		res.Memory = &specs.LinuxMemory{Limit: &bytes}
		// Memory plus swap at the same value: no swapping past the limit
		// where the host has swap. v1 accounts swap only with swapaccount=1.
		if swapAccounted() {
			res.Memory.Swap = &bytes
		}
	}
	if limits.CPU != "" {
		q, err := resource.ParseQuantity(limits.CPU)
		if err != nil {
			return nil, fmt.Errorf("limits.cpu %q: %w", limits.CPU, err)
		}
		quota := max(q.MilliValue()*cpuPeriod/1000, 1000) // the kernel's minimum is 1 ms
		period := uint64(cpuPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	return res, nil
}

// swapAccounted reports whether the kernel accounts swap per cgroup.
func swapAccounted() bool {
	if cgroups.Mode() == cgroups.Unified {
		return true
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// newWorkerCgroup creates the cgroup of worker id below the provider's own.
func newWorkerCgroup(id string, res *specs.LinuxResources) (workerCgroup, error) {
	path := filepath.Join("pronghorn", id)
	if cgroups.Mode() == cgroups.Unified {
		own, err := cgroup2.NestedGroupPath("")
		if err != nil {
			return nil, fmt.Errorf("cgroup v2: own group: %w", err)
		}
		m, err := cgroup2.NewManager("/sys/fs/cgroup", filepath.Join(own, path), cgroup2.ToResources(res))
		if err != nil {
			return nil, fmt.Errorf("cgroup v2: create %s: %w", path, err)
		}
		return v2Cgroup{m}, nil
	}
	cg, err := cgroup1.New(cgroup1.NestedPath("/"+path), res, cgroup1.WithHierarchy(limitHierarchy))
	if err != nil {
		return nil, fmt.Errorf("cgroup v1: create %s: %w", path, err)
	}
	return v1Cgroup{cg}, nil
}

// limitHierarchy is the v1 controllers a worker's limits need; the others
// (devices, freezer, named hierarchies) stay the provider's.
func limitHierarchy() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		switch s.Name() {
		case cgroup1.Memory, cgroup1.Cpu, cgroup1.Pids:
			out = append(out, s)
		}
	}
	return out, nil
}

type v1Cgroup struct{ cg cgroup1.Cgroup }

func (c v1Cgroup) add(pid int) error { return c.cg.AddProc(uint64(pid)) }
func (c v1Cgroup) delete() error     { return ignoreGone(c.cg.Delete()) }
func (c v1Cgroup) oomKills() uint64 {
	st, err := c.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return 0
	}
	return st.GetMemoryOomControl().GetOomKill()
}

type v2Cgroup struct{ m *cgroup2.Manager }

func (c v2Cgroup) add(pid int) error { return c.m.AddProc(uint64(pid)) }
func (c v2Cgroup) delete() error     { return ignoreGone(c.m.Delete()) }
func (c v2Cgroup) oomKills() uint64 {
	st, err := c.m.Stat()
	if err != nil {
		return 0
	}
	return st.GetMemoryEvents().GetOomKill()
}

// removeStaleCgroups deletes the cgroups of workers an earlier provider
// left behind (their tasks were killed at start).
func removeStaleCgroups() {
	if cgroups.Mode() == cgroups.Unified {
		own, err := cgroup2.NestedGroupPath("")
		if err != nil {
			return
		}
		for _, id := range subdirs(filepath.Join("/sys/fs/cgroup", own, "pronghorn")) {
			if m, err := cgroup2.Load(filepath.Join(own, "pronghorn", id)); err == nil {
				deleteCgroup(v2Cgroup{m})
			}
		}
		return
	}
	own, err := cgroup1.NestedPath("/pronghorn")(cgroup1.Memory)
	if err != nil {
		return
	}
	for _, id := range subdirs(filepath.Join("/sys/fs/cgroup/memory", own)) {
		if cg, err := cgroup1.Load(cgroup1.NestedPath("/pronghorn/"+id), cgroup1.WithHierarchy(limitHierarchy)); err == nil {
			deleteCgroup(v1Cgroup{cg})
		}
	}
}

func subdirs(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// deleteCgroup removes a worker's cgroup once its tasks are gone; the
// kernel may still be tearing down the last of them, so it tries briefly.
func deleteCgroup(cg workerCgroup) {
	if cg == nil {
		return
	}
	for i := 0; ; i++ {
		err := cg.delete()
		if err == nil || i == 50 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ignoreGone(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
