package eval

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name, line string
		want       procStat
		wantErr    bool
	}{
		{"plain", "42 (pypy3) S 7 42 42 0 -1 4194304 100 0 0 0 150 25 3 4 20 0 1 0 779989 1000 100",
			procStat{pid: 42, ppid: 7, utime: 150, stime: 25, cutime: 3, cstime: 4}, false},
		{"a command with spaces and parentheses", "9 (a (b) c) R 1 9 9 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 5",
			procStat{pid: 9, ppid: 1, utime: 1, stime: 2, cutime: 3, cstime: 4}, false},
		{"truncated", "9 (x) R 1 2 3", procStat{}, true},
		{"no name", "garbage", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.line))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %+v, %v; want %+v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// fakeProc writes /proc/<pid>/stat files for a process tree.
func fakeProc(t *testing.T, procs []procStat) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range procs {
		d := filepath.Join(dir, fmt.Sprint(p.pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("%d (x) S %d 0 0 0 -1 0 0 0 0 0 %d %d %d %d 20 0 1 0 1", p.pid, p.ppid, p.utime, p.stime, p.cutime, p.cstime)
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "loadavg"), []byte("1.50 0.5 0.2 1/100 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The provider's own time is separate; everything below it counts as the
// workers', live or reaped; unrelated processes do not count.
func TestCPUSampler(t *testing.T) {
	proc := fakeProc(t, []procStat{
		{pid: 1, ppid: 0, utime: 1000, stime: 1000},                    // init: not ours
		{pid: 10, ppid: 1, utime: 50, stime: 10, cutime: 7, cstime: 3}, // the provider; reaped workers: 10 ticks
		{pid: 11, ppid: 10, utime: 2, stime: 1, cutime: 20, cstime: 5}, // an agent, which reaped CRIU: 25 ticks
		{pid: 12, ppid: 11, utime: 100, stime: 4},                      // its function
		{pid: 13, ppid: 1, utime: 500},                                 // someone else's
	})
	s, err := (&cpuSampler{proc: proc, root: 10}).sample()
	if err != nil {
		t.Fatal(err)
	}
	want := cpuSample{Provider: 600 * time.Millisecond, Workers: (10 + 3 + 25 + 104) * 10 * time.Millisecond, Live: 2}
	if s != want {
		t.Errorf("sample %+v, want %+v", s, want)
	}
	if _, err := (&cpuSampler{proc: proc, root: 99}).sample(); err == nil {
		t.Error("a missing provider is an error")
	}
	if got := loadAverage(proc); got != 1.5 {
		t.Errorf("load average %v", got)
	}
}

func TestCPUSampleSubNeverNegative(t *testing.T) {
	for _, tc := range []struct {
		earlier, later, want cpuSample
	}{
		{cpuSample{Provider: 10, Workers: 100}, cpuSample{Provider: 15, Workers: 130, Live: 2}, cpuSample{Provider: 5, Workers: 30, Live: 2}},
		// A function killed with its pid namespace takes its time along.
		{cpuSample{Provider: 10, Workers: 300}, cpuSample{Provider: 12, Workers: 90, Live: 1}, cpuSample{Provider: 2, Workers: 0, Live: 1}},
	} {
		if got := tc.later.sub(tc.earlier); got != tc.want {
			t.Errorf("%+v.sub(%+v) = %+v, want %+v", tc.later, tc.earlier, got, tc.want)
		}
	}
}
