package eval

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWorkerTracker(t *testing.T) {
	type step struct {
		lineage int
		token   string
		failed  bool
		worker  int
		served  int
		start   string
	}
	tests := []struct {
		name  string
		rate  int
		steps []step
	}{
		{"cold workers of E=2 by count alone", 2, []step{
			{-1, "", false, 0, 1, ""}, {-1, "", false, 0, 2, ""}, {-1, "", false, 1, 1, ""}, {-1, "", false, 1, 2, ""},
		}},
		{"restores are told by their lineage", 2, []step{
			{1, "a", false, 0, 1, StartCold}, {2, "a", false, 0, 2, ""}, {2, "b", false, 1, 1, StartRestore}, {3, "b", false, 1, 2, ""},
		}},
		{"a continuing lineage on a new token is a new worker", 3, []step{
			{1, "a", false, 0, 1, StartCold}, {2, "b", false, 1, 1, StartRestore}, {3, "b", false, 1, 2, ""},
		}},
		{"a lineage jump without a token is a new worker", 0, []step{
			{1, "", false, 0, 1, StartCold}, {2, "", false, 0, 2, ""}, {2, "", false, 1, 1, StartRestore},
		}},
		{"never evicted: one worker", 0, []step{
			{1, "a", false, 0, 1, StartCold}, {2, "a", false, 0, 2, ""}, {3, "a", false, 0, 3, ""},
		}},
		{"a failed request takes a slot of its worker", 2, []step{
			{1, "a", false, 0, 1, StartCold}, {0, "", true, 0, 0, ""}, {2, "b", false, 1, 1, StartRestore},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := workerTracker{rate: tt.rate, lineage: -1}
			for i, s := range tt.steps {
				if s.failed {
					w.failed()
					continue
				}
				worker, served, start := w.next(invocation{lineage: s.lineage, worker: s.token})
				if worker != s.worker || served != s.served || start != s.start {
					t.Errorf("step %d: worker %d served %d start %q, want %d %d %q", i, worker, served, start, s.worker, s.served, s.start)
				}
			}
		})
	}
}

func TestPlanOrder(t *testing.T) {
	o := Options{Benchmarks: []string{"bfs", "simple-hash"}, Strategies: []string{StrategyCold, StrategyBandit}, Rates: []int{4, 1},
		Requests: 10, Seeds: []int64{1, 2}, WarmupRequests: 20, ProbeReps: 1, ProbeAt: 5}
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range o.Plan() {
		got = append(got, c.Dir())
	}
	var want []string
	for _, seed := range []string{"1", "2"} {
		for _, b := range []string{"bfs", "simple-hash"} {
			want = append(want, "runs/"+b+"/warmup-s"+seed, "runs/"+b+"/probe-s"+seed)
			for _, e := range []string{"4", "1"} {
				for _, s := range []string{"cold", "bandit"} {
					want = append(want, "runs/"+b+"/"+s+"-e"+e+"-s"+seed)
				}
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	o.WarmupRequests, o.ProbeReps = -1, -1
	for _, c := range o.Plan() {
		if c.Kind != KindRun {
			t.Errorf("warm-up and probes disabled, yet %s planned", c)
		}
	}
}

// fakeOptions runs a small grid against a fake provider, fast.
func fakeOptions(url, out string, stdout *bytes.Buffer) Options {
	return Options{
		Gateway: url, Benchmarks: []string{"bfs", "word-count"}, Strategies: AllStrategies(),
		Rates: []int{4, 1}, Requests: 8, Intervals: map[string]time.Duration{"pypy": time.Millisecond, "jvm": time.Millisecond},
		Mutability: 0.1, Seeds: []int64{7}, OutDir: out, Stdout: stdout, RunID: "t1", Settle: time.Millisecond,
		WarmupRequests: 12, ProbeReps: 1, ProbeAt: 3, ReportDir: filepath.Join(out, "report"),
	}
}

func TestRunAgainstFakeProvider(t *testing.T) {
	fp := newFakeProvider()
	srv := httptest.NewServer(fp.handler())
	defer srv.Close()
	out := t.TempDir()
	var stdout bytes.Buffer
	o := fakeOptions(srv.URL, out, &stdout)
	if err := Run(context.Background(), o); err != nil {
		t.Fatalf("Run: %v\n%s", err, stdout.String())
	}
	ds, err := LoadResults(out)
	if err != nil {
		t.Fatal(err)
	}
	// 2 benchmarks × (4 strategies × 2 rates + warm-up) runs, and a probe each.
	if len(ds.Runs) != 18 || len(ds.Probes) != 2 {
		t.Fatalf("%d runs and %d probes, want 18 and 2", len(ds.Runs), len(ds.Probes))
	}
	for _, r := range ds.Runs {
		if len(r.Samples) != r.Requests || r.Env == "" || r.Function == "" {
			t.Errorf("%s: %d samples of %d, env %q", r.Chunk, len(r.Samples), r.Requests, r.Env)
		}
		for _, s := range r.Samples {
			if s.ServerUS != 1234 || s.ClientUS <= 0 || s.Mutability != 0.1 || s.Seed != 7 || s.Lineage < 1 || s.Served < 1 {
				t.Fatalf("%s: bad row %+v", r.Chunk, s)
			}
		}
		if r.Kind == KindRun && r.Rate == 4 && r.Strategy == StrategyFixed {
			// Workers of 4: the first cold, then restored from request 1.
			starts := []string{}
			for _, s := range r.Samples {
				if s.Start != "" {
					starts = append(starts, s.Start)
				}
			}
			if !reflect.DeepEqual(starts, []string{StartCold, StartRestore}) {
				t.Errorf("fixed E=4 starts %v", starts)
			}
			if got := r.durations(EventDump); len(got) != 1 || r.State.Checkpoints != 1 || r.State.Restores < 1 {
				t.Errorf("fixed E=4: dumps %v, state %+v", got, r.State)
			}
		}
	}
	// Every function was removed, and requests carried seed·10⁶+index and
	// mutability.
	if len(fp.fns) != 0 || len(fp.deleted) != len(fp.deployed) {
		t.Errorf("deployed %v, deleted %v, left %v", fp.deployed, fp.deleted, fp.fns)
	}
	if got := fp.requests["bfs-rc-e4-s7-t1"]; len(got) != 8 || got[0] != "mutability=0.1&seed=7000000" || got[7] != "mutability=0.1&seed=7000007" {
		t.Errorf("queries %v", got)
	}
	for _, p := range ds.Probes {
		kinds := map[string]int{}
		for _, r := range p.Rows {
			kinds[r.Kind]++
		}
		if kinds[ProbeCheckpoint] != 1 || kinds[ProbeRestore] != 1 || kinds[ProbeCold] != 1 {
			t.Errorf("probe %s rows %+v", p.Run.Chunk, p.Rows)
		}
		for _, r := range p.Rows {
			if r.Kind == ProbeRestore && (r.RequestNumber != 4 || r.Seconds <= 0) {
				t.Errorf("probe restore %+v: want lineage 4 (checkpoint at 3) and a restore time", r)
			}
		}
	}
	checkReport(t, filepath.Join(out, "report"), []string{"bfs", "word-count"}, 2*4*2)

	// A second run finds everything done and measures nothing.
	before := len(fp.deployed)
	stdout.Reset()
	if err := Run(context.Background(), o); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if len(fp.deployed) != before || !strings.Contains(stdout.String(), "0 to run") {
		t.Errorf("rerun deployed %d functions; output:\n%s", len(fp.deployed)-before, stdout.String())
	}
}

// An interrupted protocol resumes: the chunks completed before the
// interruption are kept and not measured again.
func TestRunResumes(t *testing.T) {
	fp := newFakeProvider()
	srv := httptest.NewServer(fp.handler())
	defer srv.Close()
	out := t.TempDir()
	var stdout bytes.Buffer
	o := fakeOptions(srv.URL, out, &stdout)
	o.NoReport, o.WarmupRequests, o.ProbeReps = true, -1, -1
	first := o
	first.Benchmarks = []string{"bfs"}
	if err := Run(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	// A leftover of a chunk killed mid-write is cleared, not loaded.
	stale := filepath.Join(out, "runs", "bfs", ".cold-e4-s9.tmp-123")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	deployed := len(fp.deployed)
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, name := range fp.deployed[deployed:] {
		if strings.HasPrefix(name, "bfs-") {
			t.Errorf("resumed run measured %s again", name)
		}
	}
	if got := len(fp.deployed) - deployed; got != 8 {
		t.Errorf("resumed run deployed %d functions, want 8 (word-count's runs)", got)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary chunk still there: %v", err)
	}

	// The same directory under another protocol is refused.
	o.Requests = 9
	err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "requests=8") {
		t.Errorf("mixing protocols: %v", err)
	}
}

func TestRunFailsCleanly(t *testing.T) {
	tests := []struct {
		name string
		opts func(url string) Options
		want string
	}{
		{"unknown strategy", func(u string) Options { return Options{Gateway: u, Strategies: []string{"lru"}} }, "unknown strategy"},
		{"bad rate", func(u string) Options { return Options{Gateway: u, Rates: []int{0}} }, "eviction rate"},
		{"bad gateway", func(string) Options { return Options{Gateway: "localhost"} }, "gateway"},
		{"repeated seed", func(u string) Options { return Options{Gateway: u, Seeds: []int64{1, 1}} }, "seeds"},
		{"unknown function", func(u string) Options {
			return Options{Gateway: u, Benchmarks: []string{"nope"}, Requests: 2, Rates: []int{1}, Strategies: []string{"cold"},
				WarmupRequests: -1, ProbeReps: -1}
		}, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(newFakeProvider().handler())
			defer srv.Close()
			o := tt.opts(srv.URL)
			o.OutDir = t.TempDir()
			err := Run(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestAnnotations(t *testing.T) {
	o := DefaultOptions()
	o.PoolCapacity, o.CheckpointAt = 12, 1
	tests := []struct {
		strategy string
		rate     int
		want     map[string]string
	}{
		{StrategyCold, 20, map[string]string{"com.pronghorn.strategy": "cold", "com.pronghorn.evict-after": "20", "com.pronghorn.seed": "3"}},
		{StrategyFixed, 4, map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.evict-after": "4", "com.pronghorn.seed": "3", "com.pronghorn.checkpoint-at": "1"}},
		{StrategyRequestCentric, 1, map[string]string{"com.pronghorn.strategy": "request-centric", "com.pronghorn.evict-after": "1", "com.pronghorn.seed": "3", "com.pronghorn.pool-capacity": "12"}},
		{StrategyBandit, 0, map[string]string{"com.pronghorn.strategy": "bandit", "com.pronghorn.evict-after": "0", "com.pronghorn.seed": "3", "com.pronghorn.pool-capacity": "12"}},
	}
	for _, tt := range tests {
		if got := o.annotations(tt.strategy, tt.rate, 3); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s/%d: %v, want %v", tt.strategy, tt.rate, got, tt.want)
		}
	}
}

// The driver sends its credentials on the API calls a provider guards, and
// none on the measured invocations (client_test.go checks the client); the
// options default the user.
func TestDefaultUser(t *testing.T) {
	o, err := Options{Gateway: "http://127.0.0.1:1", Password: "pw"}.withDefaults()
	if err != nil || o.User != "admin" {
		t.Errorf("default user %q, %v", o.User, err)
	}
}
