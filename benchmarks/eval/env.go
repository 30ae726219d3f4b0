package eval

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Environment describes the machine and software a chunk ran on: the
// report prints it, and a chunk records the hash of its own, so results
// from two machines are never mistaken for one.
type Environment map[string]string

// environmentKeys are the keys of an Environment, in the order the report
// prints them.
func environmentKeys() []string {
	return []string{"os", "kernel", "cpu", "cpus", "memory", "cgroups", "criu", "pypy", "java", "node", "go", "pronghorn"}
}

// Hash identifies an environment by its content.
func (e Environment) Hash() string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, e[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// envProbe says where to look: the CRIU binary the provider runs, and the
// build of the binary driving (and, with --start-provider, being) the
// provider.
type envProbe struct {
	CRIU  string
	Build string
	// Command runs a version command; tests replace it. Its output is the
	// command's stdout and stderr (java prints its version on stderr).
	Command func(ctx context.Context, name string, args ...string) (string, error)
	Proc    string // /proc, replaced by tests
}

func runVersion(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// captureEnvironment records versions and hardware. A tool that is
// missing is recorded as "absent" rather than failing: the report shows it.
func captureEnvironment(ctx context.Context, p envProbe) Environment {
	if p.Command == nil {
		p.Command = runVersion
	}
	if p.Proc == "" {
		p.Proc = "/proc"
	}
	e := Environment{"go": runtime.Version(), "cpus": strconv.Itoa(runtime.NumCPU()), "pronghorn": p.Build}
	if e["pronghorn"] == "" {
		e["pronghorn"] = "unknown"
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		e["kernel"] = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	e["os"] = osRelease()
	e["cpu"] = firstField(filepath.Join(p.Proc, "cpuinfo"), "model name")
	if mem := firstField(filepath.Join(p.Proc, "meminfo"), "MemTotal"); mem != "" {
		if kb, err := strconv.ParseFloat(strings.Fields(mem)[0], 64); err == nil {
			e["memory"] = fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	e["cgroups"] = "v1"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		e["cgroups"] = "v2"
	}
	version := func(key, name string, args ...string) {
		out, err := p.Command(ctx, name, args...)
		line := firstLine(out)
		switch {
		case err != nil && line == "":
			e[key] = "absent"
		case line == "":
			e[key] = "unknown"
		default:
			e[key] = line
		}
	}
	criu := p.CRIU
	if criu == "" {
		criu = "criu"
	}
	version("criu", criu, "--version")
	version("pypy", "pypy3", "--version")
	version("java", "java", "-version")
	version("node", "node", "--version")
	// pypy3 --version prints the Python version first; the PyPy one is on
	// its second line ("[PyPy 7.3.11 with GCC 12.2.0]").
	if out, err := p.Command(ctx, "pypy3", "--version"); err == nil {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "[PyPy") {
				e["pypy"] = strings.Trim(strings.TrimSpace(l), "[]")
			}
		}
	}
	return e
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// firstField returns the value of the first "key: value" line of a /proc
// file such as cpuinfo or meminfo.
func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func osRelease() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

// loadAverage is the 1-minute load average, or -1 when unknown.
func loadAverage(proc string) float64 {
	data, err := os.ReadFile(filepath.Join(proc, "loadavg"))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// writeEnvironment stores e as env/<hash>.csv (key,value) unless present.
func writeEnvironment(dir string, e Environment) (string, error) {
	h := e.Hash()
	path := filepath.Join(dir, "env", h+".csv")
	if _, err := os.Stat(path); err == nil {
		return h, nil
	}
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	recs := make([][]string, len(keys))
	for i, k := range keys {
		recs[i] = []string{k, e[k]}
	}
	err := writeFile(path, func(w io.Writer) error { return encodeTable(w, []string{"key", "value"}, recs, false) })
	return h, err
}

func readEnvironments(dir string) (map[string]Environment, error) {
	files, err := filepath.Glob(filepath.Join(dir, "env", "*.csv"))
	if err != nil {
		return nil, err
	}
	out := map[string]Environment{}
	for _, f := range files {
		kv, err := readTable(f, func(r row) ([2]string, error) { return [2]string{r.str("key"), r.str("value")}, r.err })
		if err != nil {
			return nil, err
		}
		e := Environment{}
		for _, p := range kv {
			e[p[0]] = p[1]
		}
		out[strings.TrimSuffix(filepath.Base(f), ".csv")] = e
	}
	return out, nil
}
