package eval

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: the kernel's
// USER_HZ, 100 on every architecture Linux runs this on (it is ABI, not the
// kernel's internal HZ).
const userHZ = 100

// cpuSampler measures the CPU time of a provider process and of everything
// below it, from /proc, so the driver needs no help from the provider:
//
//   - Provider: the provider's own threads (proxying, packing and
//     uploading snapshots, answering the driver's scrapes).
//   - Workers: every process below it (agents, CRIU, the functions),
//     alive or gone: a live process's utime+stime plus the cutime+cstime
//     of the children it reaped, and the provider's own cutime+cstime for
//     the workers it reaped.
//
// Per-worker cgroups would be cleaner, but on cgroup v1 the workers' cgroups
// are not in the cpuacct hierarchy, and two providers on one host would
// share them. A process that exits between two reads of one scan is missed
// or counted twice for that scan; with ~10 ms resolution per process this
// is noise, not bias.
type cpuSampler struct {
	proc string // /proc, replaced by tests
	root int    // the provider's pid
}

// cpuSample is one reading, cumulative since the processes started.
type cpuSample struct {
	Provider, Workers time.Duration
	Live              int // live processes below the provider
}

// sub is the CPU spent between an earlier sample and s. The workers' total
// can fall: a process killed with its pid namespace (a function whose agent
// exited) is reaped by nobody who adds its time to a cutime, so its time
// leaves the tree. Such an interval counts as zero rather than negative.
func (s cpuSample) sub(earlier cpuSample) cpuSample {
	return cpuSample{Provider: max(0, s.Provider-earlier.Provider), Workers: max(0, s.Workers-earlier.Workers), Live: s.Live}
}

type procStat struct {
	pid, ppid                    int
	utime, stime, cutime, cstime int64
}

// parseProcStat reads the fields of /proc/<pid>/stat the sampler needs.
// The command name (field 2) may hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseProcStat(data []byte) (procStat, error) {
	open := bytes.IndexByte(data, '(')
	close := bytes.LastIndexByte(data, ')')
	if open < 1 || close < open {
		return procStat{}, fmt.Errorf("stat: no command name in %q", data)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("stat: pid: %w", err)
	}
	f := bytes.Fields(data[close+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("stat of %d: %d fields", pid, len(f)+2)
	}
	nums := make([]int64, 5)
	for i, idx := range []int{1, 11, 12, 13, 14} {
		if nums[i], err = strconv.ParseInt(string(f[idx]), 10, 64); err != nil {
			return procStat{}, fmt.Errorf("stat of %d: field %d: %w", pid, idx+3, err)
		}
	}
	return procStat{pid: pid, ppid: int(nums[0]), utime: nums[1], stime: nums[2], cutime: nums[3], cstime: nums[4]}, nil
}

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }

// sample scans /proc once.
func (c *cpuSampler) sample() (cpuSample, error) {
	entries, err := os.ReadDir(c.proc)
	if err != nil {
		return cpuSample{}, fmt.Errorf("cpu sample: %w", err)
	}
	children := map[int][]procStat{}
	var root *procStat
	for _, e := range entries {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		data, err := os.ReadFile(filepath.Join(c.proc, name, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		st, err := parseProcStat(data)
		if err != nil {
			continue
		}
		if st.pid == c.root {
			root = &st
			continue
		}
		children[st.ppid] = append(children[st.ppid], st)
	}
	if root == nil {
		return cpuSample{}, fmt.Errorf("cpu sample: provider pid %d is gone", c.root)
	}
	s := cpuSample{Provider: ticks(root.utime + root.stime), Workers: ticks(root.cutime + root.cstime)}
	stack := []int{c.root}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, ch := range children[pid] {
			s.Workers += ticks(ch.utime + ch.stime + ch.cutime + ch.cstime)
			s.Live++
			stack = append(stack, ch.pid)
		}
	}
	return s, nil
}
