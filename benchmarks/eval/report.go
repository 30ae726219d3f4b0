package eval

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot/vg"
)

// Table is a small rectangular result written as CSV, Markdown and
// aligned text from one source, so every format says the same.
type Table struct {
	Title  string
	Note   string // how the numbers were obtained
	Header []string
	Rows   [][]string
}

func (t Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.Header); err != nil {
		return fmt.Errorf("%s csv: %w", t.Title, err)
	}
	if err := cw.WriteAll(t.Rows); err != nil {
		return fmt.Errorf("%s csv: %w", t.Title, err)
	}
	return nil
}

// WriteMarkdown writes the table under a heading of the given level.
func (t Table) WriteMarkdown(w io.Writer, level int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n\n", strings.Repeat("#", level), t.Title)
	if t.Note != "" {
		fmt.Fprintf(&b, "%s\n\n", t.Note)
	}
	if len(t.Rows) == 0 {
		b.WriteString("No data.\n\n")
	} else {
		b.WriteString(t.markdownBody())
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("%s markdown: %w", t.Title, err)
	}
	return nil
}

func (t Table) markdownBody() string {
	var b strings.Builder
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	cells := make([]string, len(t.Header))
	for i, h := range t.Header {
		cells[i] = esc(h)
	}
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(t.Header)) + "\n")
	for _, r := range t.Rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = esc(c)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	b.WriteString("\n")
	return b.String()
}

func (t Table) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.Header, "\t")+"\t")
	for _, r := range t.Rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("%s: %w", t.Title, err)
	}
	return nil
}

// --- number formatting ------------------------------------------------------

func fmtF(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// fmtMS prints milliseconds with three significant digits or so.
func fmtMS(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case a < 1:
		return fmtF(v, 3)
	case a < 10:
		return fmtF(v, 2)
	case a < 100:
		return fmtF(v, 1)
	}
	return fmtF(v, 0)
}

// fmtPct prints a fraction as a percentage.
func fmtPct(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmtF(100*v, 1) + "%"
}

// reduction is how much lower v is than base, as a percentage (negative:
// higher).
func reduction(v, base float64) string {
	if base <= 0 || math.IsNaN(base) || math.IsNaN(v) {
		return "-"
	}
	return fmtPct(1 - v/base)
}

func mib(bytes float64) string {
	if bytes <= 0 || math.IsNaN(bytes) {
		return "-"
	}
	return fmtF(bytes/(1<<20), 1)
}

// --- grouping ---------------------------------------------------------------

func strategyRank(s string) int {
	for i, x := range AllStrategies() {
		if x == s {
			return i
		}
	}
	return len(AllStrategies())
}

// benchmarkOrder lists the benchmarks of runs in the paper's order, then
// any others by name.
func benchmarkOrder(runs []RunResult) []string {
	present := map[string]bool{}
	for _, r := range runs {
		present[r.Benchmark] = true
	}
	var out []string
	for _, b := range CatalogNames() {
		if present[b] {
			out = append(out, b)
			delete(present, b)
		}
	}
	return append(out, sortedKeys(present)...)
}

// grid is the configurations present in a dataset.
type grid struct {
	benchmarks []string
	strategies []string
	rates      []int // descending
	seeds      []int64
	t          int // fixed's T
	requests   []int
}

func gridOf(ds *Dataset) grid {
	g := grid{benchmarks: benchmarkOrder(ds.Runs), t: 1}
	strategies, rates, seeds, requests := map[string]bool{}, map[int]bool{}, map[int64]bool{}, map[int]bool{}
	for _, r := range ds.Runs {
		if r.Kind != KindRun {
			continue
		}
		strategies[r.Strategy], rates[r.Rate], seeds[r.Seed], requests[r.Requests] = true, true, true, true
		if r.Strategy == StrategyFixed {
			g.t = r.Protocol.CheckpointAt
		}
	}
	g.strategies = sortedKeys(strategies)
	sort.SliceStable(g.strategies, func(i, j int) bool { return strategyRank(g.strategies[i]) < strategyRank(g.strategies[j]) })
	g.rates = sortedKeys(rates)
	sort.Sort(sort.Reverse(sort.IntSlice(g.rates)))
	g.seeds = sortedKeys(seeds)
	g.requests = sortedKeys(requests)
	return g
}

// cell is everything measured for one (benchmark, strategy, rate), over
// all seeds.
type cell struct {
	runs    []RunResult
	latency []float64 // client ms, pooled over seeds
}

func (c cell) ok() bool { return len(c.latency) > 0 }

// perRun is the mean over runs of f.
func (c cell) perRun(f func(RunResult) float64) float64 {
	var xs []float64
	for _, r := range c.runs {
		xs = append(xs, f(r))
	}
	return mean(xs)
}

type cellKey struct {
	bench, strategy string
	rate            int
}

func cells(ds *Dataset) map[cellKey]cell {
	out := map[cellKey]cell{}
	for _, r := range ds.Runs {
		if r.Kind != KindRun {
			continue
		}
		k := cellKey{r.Benchmark, r.Strategy, r.Rate}
		c := out[k]
		c.runs = append(c.runs, r)
		c.latency = append(c.latency, clientMS(r.Samples)...)
		out[k] = c
	}
	return out
}

// floors is the warm floor per benchmark: the median client latency of the
// second half of the never-evicted worker's requests, over seeds.
func floors(ds *Dataset) map[string][]float64 {
	out := map[string][]float64{}
	for _, r := range ds.Runs {
		if r.Kind != KindWarmup {
			continue
		}
		for _, s := range r.Samples {
			if s.Index >= r.Requests/2 {
				out[r.Benchmark] = append(out[r.Benchmark], float64(s.ClientUS)/1000)
			}
		}
	}
	return out
}

// --- tables -----------------------------------------------------------------

// SummaryTable: median, p90 and mean client latency per benchmark × rate ×
// strategy, pooled over seeds, with how much request-centric and ours cut
// them against cold and fixed(T).
func SummaryTable(ds *Dataset) Table {
	g, cs := gridOf(ds), cells(ds)
	fx := strategyLabel(StrategyFixed, g.t)
	t := Table{
		Title: "Latency summary",
		Note: fmt.Sprintf("Client latency (request sent to response read at the driver), in ms, pooled over the seeds' runs. "+
			"The last four columns, for request-centric and ours, say how much lower their p50 and p90 are than cold's and %s's "+
			"(negative: higher). Checkpoints: per run.", fx),
		Header: []string{"benchmark", "E", "strategy", "runs", "requests", "p50", "p90", "mean", "checkpoints",
			"p50 vs cold", "p50 vs " + fx, "p90 vs cold", "p90 vs " + fx},
	}
	for _, b := range g.benchmarks {
		for _, e := range g.rates {
			cold, fixed := cs[cellKey{b, StrategyCold, e}], cs[cellKey{b, StrategyFixed, e}]
			for _, s := range g.strategies {
				c := cs[cellKey{b, s, e}]
				if !c.ok() {
					continue
				}
				p50, p90 := quantile(c.latency, 0.5), quantile(c.latency, 0.9)
				red := []string{"", "", "", ""}
				if s == StrategyRequestCentric || s == StrategyBandit {
					red = []string{reduction(p50, quantile(cold.latency, 0.5)), reduction(p50, quantile(fixed.latency, 0.5)),
						reduction(p90, quantile(cold.latency, 0.9)), reduction(p90, quantile(fixed.latency, 0.9))}
				}
				t.Rows = append(t.Rows, append([]string{b, strconv.Itoa(e), strategyLabel(s, g.t), strconv.Itoa(len(c.runs)),
					strconv.Itoa(len(c.latency)), fmtMS(p50), fmtMS(p90), fmtMS(mean(c.latency)),
					fmtF(c.perRun(func(r RunResult) float64 { return float64(r.State.Checkpoints) }), 1)}, red...))
			}
		}
	}
	return t
}

// GeomeanTable: per rate, the geometric mean over benchmarks of each
// snapshotting strategy's latency relative to cold and fixed(T).
func GeomeanTable(ds *Dataset) Table {
	g, cs := gridOf(ds), cells(ds)
	fx := strategyLabel(StrategyFixed, g.t)
	t := Table{
		Title: "Across benchmarks",
		Note: "Geometric mean over the benchmarks of the ratio of each statistic to the baseline's, as a reduction " +
			"(positive: lower latency than the baseline).",
		Header: []string{"E", "strategy", "benchmarks", "p50 vs cold", "p50 vs " + fx, "p90 vs cold", "p90 vs " + fx, "mean vs cold", "mean vs " + fx},
	}
	stat := func(xs []float64, q float64) float64 {
		if q < 0 {
			return mean(xs)
		}
		return quantile(xs, q)
	}
	for _, e := range g.rates {
		for _, s := range g.strategies {
			if s == StrategyCold {
				continue
			}
			row := []string{strconv.Itoa(e), strategyLabel(s, g.t), ""}
			n := 0
			for _, q := range []float64{0.5, 0.9, -1} {
				for _, base := range []string{StrategyCold, StrategyFixed} {
					var ratios []float64
					for _, b := range g.benchmarks {
						c, bc := cs[cellKey{b, s, e}], cs[cellKey{b, base, e}]
						if c.ok() && bc.ok() {
							ratios = append(ratios, stat(c.latency, q)/stat(bc.latency, q))
						}
					}
					n = max(n, len(ratios))
					if base == s {
						row = append(row, "")
						continue
					}
					row = append(row, reduction(geomean(ratios), 1))
				}
			}
			row[2] = strconv.Itoa(n)
			t.Rows = append(t.Rows, row)
		}
	}
	return t
}

// TargetTable measures ours against request-centric on the criteria of
// issue 9, as geometric means over the benchmarks.
func TargetTable(ds *Dataset) Table {
	g, cs, fl := gridOf(ds), cells(ds), floors(ds)
	t := Table{
		Title: "Ours against request-centric",
		Note: "Geometric means over the benchmarks that ran both. Mean and p90: reduction against request-centric (issue 9 asks for at " +
			"least 20% at E=4 and E=20). p50 over floor: how far ours' median is above the benchmark's warm floor (asked: within 3%). " +
			"Checkpoints and peak storage: ours relative to request-centric (asked: at most a third, and no more storage). At E=1: not worse on any.",
		Header: []string{"E", "benchmarks", "mean vs rc", "p90 vs rc", "p50 over floor (ours)", "p50 over floor (rc)", "checkpoints ours/rc", "peak storage ours/rc"},
	}
	for _, e := range g.rates {
		var meanR, p90R, ck, st, gapOurs, gapRC []float64
		n := 0
		for _, b := range g.benchmarks {
			o, rc := cs[cellKey{b, StrategyBandit, e}], cs[cellKey{b, StrategyRequestCentric, e}]
			if !o.ok() || !rc.ok() {
				continue
			}
			n++
			meanR = append(meanR, mean(o.latency)/mean(rc.latency))
			p90R = append(p90R, quantile(o.latency, 0.9)/quantile(rc.latency, 0.9))
			ckO := o.perRun(func(r RunResult) float64 { return float64(r.State.Checkpoints) })
			ckR := rc.perRun(func(r RunResult) float64 { return float64(r.State.Checkpoints) })
			if ckR > 0 {
				ck = append(ck, math.Max(ckO, 0.5)/ckR) // zero checkpoints would vanish from a geometric mean
			}
			stO := o.perRun(func(r RunResult) float64 { return float64(r.PeakPoolBytes) })
			stR := rc.perRun(func(r RunResult) float64 { return float64(r.PeakPoolBytes) })
			if stR > 0 && stO > 0 {
				st = append(st, stO/stR)
			}
			if f := quantile(fl[b], 0.5); f > 0 {
				gapOurs = append(gapOurs, quantile(o.latency, 0.5)/f)
				gapRC = append(gapRC, quantile(rc.latency, 0.5)/f)
			}
		}
		if n == 0 {
			continue
		}
		over := func(xs []float64) string { return fmtPct(geomean(xs) - 1) }
		t.Rows = append(t.Rows, []string{strconv.Itoa(e), strconv.Itoa(n), reduction(geomean(meanR), 1), reduction(geomean(p90R), 1),
			over(gapOurs), over(gapRC), fmtF(geomean(ck), 2), fmtF(geomean(st), 2)})
	}
	return t
}

// FloorTable: the warm floor per benchmark and how far each strategy's
// median is above it.
func FloorTable(ds *Dataset) Table {
	g, cs, fl := gridOf(ds), cells(ds), floors(ds)
	t := Table{
		Title: "The floor",
		Note: "Floor: client latency of a never-evicted worker through the provider once warm (the second half of the warm-up run's " +
			"requests, pooled over seeds): p50 and p90 in ms. Then, per rate, how far each strategy's p50 is above the floor's p50.",
		Header: []string{"benchmark", "floor p50", "floor p90", "E"},
	}
	for _, s := range g.strategies {
		t.Header = append(t.Header, strategyLabel(s, g.t))
	}
	for _, b := range g.benchmarks {
		f := fl[b]
		if len(f) == 0 {
			continue
		}
		p50 := quantile(f, 0.5)
		for i, e := range g.rates {
			row := []string{b, fmtMS(p50), fmtMS(quantile(f, 0.9)), strconv.Itoa(e)}
			if i > 0 {
				row[1], row[2] = "", ""
			}
			for _, s := range g.strategies {
				c := cs[cellKey{b, s, e}]
				if !c.ok() {
					row = append(row, "-")
					continue
				}
				row = append(row, signedPct(quantile(c.latency, 0.5)/p50))
			}
			t.Rows = append(t.Rows, row)
		}
		if len(g.rates) == 0 {
			t.Rows = append(t.Rows, []string{b, fmtMS(p50), fmtMS(quantile(f, 0.9)), "-"})
		}
	}
	return t
}

// converged is the artifact's "requests to reach the optimal snapshot"
// (cost-analysis/evaluation_analysis.ipynb, convergence()): the first
// request index, from n/5 on for PyPy and 2n/5 for the JVM (100 and 200 of
// its 500), at which the median of the next 20 client latencies is within
// 2% of the median of the last fifth of the run. -1 when never.
func converged(lat []float64, runtime string) int {
	n := len(lat)
	if n < 25 {
		return -1
	}
	target := quantile(lat[n*4/5:], 0.5)
	from := n / 5
	if runtime == "jvm" {
		from = 2 * n / 5
	}
	for i := from; i < n; i++ {
		w := quantile(lat[i:min(n, i+20)], 0.5)
		if w >= 0.98*target && w <= 1.02*target {
			return i
		}
	}
	return -1
}

// Table4 reports per benchmark where the pool's best snapshot is, the
// snapshot size, dump and restore time, beside the artifact's values.
func Table4(ds *Dataset, pub map[string]Published) Table {
	g := gridOf(ds)
	t := Table{
		Title: "Table 4: snapshots",
		Note: "Best at: lineage request number of the top-scored pool entry when the run ended (median over seeds), for request-centric and " +
			"ours at the largest E. Converged: the artifact's own measure of the requests taken to reach the best snapshot (its " +
			"evaluation_analysis.ipynb: the first request, from the first fifth of the run on (two fifths on the JVM), where the median of the " +
			"next 20 latencies is within 2% of the last fifth's median; request-centric at E=4). Sizes: median of the runs' latest snapshot, " +
			"stored (tar+zstd) and raw CRIU image, MiB. Dump, frozen, restore: medians over all events of the benchmark's runs, ms (frozen from " +
			"the provider log). Artifact: its table_4_results.json (size of the raw image directory, means of 10 CLI dumps and restores).",
		Header: []string{"benchmark", "best at (rc)", "best at (ours)", "converged (rc, E=4)", "stored MiB", "raw MiB", "artifact MiB",
			"dump ms", "artifact dump ms", "frozen ms", "restore ms", "artifact restore ms", "dumps", "restores"},
	}
	maxRate := 0
	if len(g.rates) > 0 {
		maxRate = g.rates[0]
	}
	for _, b := range g.benchmarks {
		var packed, raw, dump, restore, frozen []float64
		bestRC, bestOurs, conv := []float64{}, []float64{}, []float64{}
		for _, r := range ds.Runs {
			if r.Benchmark != b || r.Kind != KindRun {
				continue
			}
			if r.PackedBytes > 0 {
				packed, raw = append(packed, r.PackedBytes), append(raw, r.RawBytes)
			}
			dump, restore = append(dump, r.durations(EventDump)...), append(restore, r.durations(EventRestore)...)
			for _, e := range r.Events {
				if e.Kind == EventCheckpoint {
					frozen = append(frozen, e.FrozenSeconds)
				}
			}
			if r.Rate == maxRate && r.bestRequestNumber() > 0 {
				switch r.Strategy {
				case StrategyRequestCentric:
					bestRC = append(bestRC, float64(r.bestRequestNumber()))
				case StrategyBandit:
					bestOurs = append(bestOurs, float64(r.bestRequestNumber()))
				}
			}
			if r.Strategy == StrategyRequestCentric && r.Rate == 4 {
				if i := converged(clientMS(r.Samples), Catalog()[b]); i >= 0 {
					conv = append(conv, float64(i))
				}
			}
		}
		p, hasPub := pub[b]
		pubCell := func(v float64) string {
			if !hasPub {
				return "-"
			}
			return fmtPublished(v)
		}
		t.Rows = append(t.Rows, []string{b, fmtF(quantile(bestRC, 0.5), 0), fmtF(quantile(bestOurs, 0.5), 0), fmtF(quantile(conv, 0.5), 0),
			mib(quantile(packed, 0.5)), mib(quantile(raw, 0.5)), pubCell(p.SnapshotMiB),
			fmtMS(quantile(dump, 0.5) * 1000), pubCell(p.DumpMS), fmtMS(quantile(frozen, 0.5) * 1000),
			fmtMS(quantile(restore, 0.5) * 1000), pubCell(p.RestoreMS), strconv.Itoa(len(dump)), strconv.Itoa(len(restore))})
	}
	return t
}

// Table5 compares the storage and network cost of the strategies per
// benchmark with the artifact's.
func Table5(ds *Dataset, pub map[string]Published) Table {
	g := gridOf(ds)
	moveRate := 4
	if !containsInt(g.rates, 4) && len(g.rates) > 0 {
		moveRate = g.rates[0]
	}
	n := 0
	if len(g.requests) > 0 {
		n = g.requests[len(g.requests)-1]
	}
	t := Table{
		Title: "Table 5: storage and network",
		Note: fmt.Sprintf("Peak: the most stored bytes of the function's pool seen after any request, at any E (median over seeds), MiB. "+
			"Moved: snapshot bytes uploaded and downloaded in a run at E=%d (median over seeds), MiB. Artifact: its table_5_results.txt, "+
			"which computes 12 × snapshot size and (500/4) × 2 × snapshot size rather than measuring; the last two columns apply that formula "+
			"to our raw image size and our %d requests.", moveRate, n),
		Header: []string{"benchmark", "rc peak", "rc moved", "ours peak", "ours moved", strategyLabel(StrategyFixed, g.t) + " peak",
			strategyLabel(StrategyFixed, g.t) + " moved", "artifact storage MB", "artifact network MB", "formula storage", "formula network"},
	}
	for _, b := range g.benchmarks {
		// peak[strategy][seed]: the largest pool over that seed's rates.
		peak := map[string]map[int64]float64{}
		moved := map[string][]float64{}
		var raw []float64
		for _, r := range ds.Runs {
			if r.Benchmark != b || r.Kind != KindRun {
				continue
			}
			if peak[r.Strategy] == nil {
				peak[r.Strategy] = map[int64]float64{}
			}
			peak[r.Strategy][r.Seed] = math.Max(peak[r.Strategy][r.Seed], float64(r.PeakPoolBytes))
			if r.Rate == moveRate {
				moved[r.Strategy] = append(moved[r.Strategy], r.UploadBytes+r.DownloadBytes)
			}
			if r.RawBytes > 0 {
				raw = append(raw, r.RawBytes)
			}
		}
		peakOf := func(s string) string {
			var perSeed []float64
			for _, v := range peak[s] {
				perSeed = append(perSeed, v)
			}
			if len(perSeed) == 0 {
				return "-"
			}
			return mib(quantile(perSeed, 0.5))
		}
		movedOf := func(s string) string {
			if len(moved[s]) == 0 {
				return "-"
			}
			return mib(quantile(moved[s], 0.5))
		}
		p, hasPub := pub[b]
		pubCell := func(v float64) string {
			if !hasPub {
				return "-"
			}
			return fmtPublished(v)
		}
		size := quantile(raw, 0.5)
		t.Rows = append(t.Rows, []string{b, peakOf(StrategyRequestCentric), movedOf(StrategyRequestCentric), peakOf(StrategyBandit),
			movedOf(StrategyBandit), peakOf(StrategyFixed), movedOf(StrategyFixed), pubCell(p.StorageMB), pubCell(p.NetworkMB),
			mib(12 * size), mib(float64(n) / 4 * 2 * size)})
	}
	return t
}

func containsInt(xs []int, v int) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

// SeedsTable shows how much each configuration moves between seeds.
func SeedsTable(ds *Dataset) Table {
	g, cs := gridOf(ds), cells(ds)
	fx := strategyLabel(StrategyFixed, g.t)
	t := Table{
		Title: "Spread over seeds",
		Note: fmt.Sprintf("Per configuration, the runs' own p50 and mean (ms) over the seeds: mean ± standard deviation [min, max]; then "+
			"the range over seeds of the p50 reduction against %s.", fx),
		Header: []string{"benchmark", "E", "strategy", "seeds", "p50", "mean", "p50 vs " + fx},
	}
	spread := func(xs []float64) string {
		lo, hi := minMax(xs)
		return fmt.Sprintf("%s ± %s [%s, %s]", fmtMS(mean(xs)), fmtMS(stddev(xs)), fmtMS(lo), fmtMS(hi))
	}
	for _, b := range g.benchmarks {
		for _, e := range g.rates {
			fixedBySeed := map[int64]float64{}
			for _, r := range cs[cellKey{b, StrategyFixed, e}].runs {
				fixedBySeed[r.Seed] = quantile(clientMS(r.Samples), 0.5)
			}
			for _, s := range g.strategies {
				c := cs[cellKey{b, s, e}]
				if len(c.runs) < 2 {
					continue
				}
				var p50s, means, reds []float64
				for _, r := range c.runs {
					l := clientMS(r.Samples)
					p50s, means = append(p50s, quantile(l, 0.5)), append(means, mean(l))
					if f, ok := fixedBySeed[r.Seed]; ok && f > 0 && s != StrategyFixed {
						reds = append(reds, 1-quantile(l, 0.5)/f)
					}
				}
				red := ""
				if len(reds) > 0 {
					lo, hi := minMax(reds)
					red = fmt.Sprintf("%s to %s", fmtPct(lo), fmtPct(hi))
				}
				t.Rows = append(t.Rows, []string{b, strconv.Itoa(e), strategyLabel(s, g.t), strconv.Itoa(len(c.runs)), spread(p50s), spread(means), red})
			}
		}
	}
	return t
}

// probeCosts summarises a benchmark's probes: medians of each event kind.
type probeCosts struct {
	ckCRIU, ckProvider, dump, frozen     float64 // ms
	rstCPU, rstFirst, coldCPU, coldFirst float64
	reps                                 int
}

func probeSummary(ds *Dataset) map[string]probeCosts {
	by := map[string][]ProbeRow{}
	sampled := map[string]bool{}
	for _, p := range ds.Probes {
		by[p.Run.Benchmark] = append(by[p.Run.Benchmark], p.Rows...)
		// CPU known only if every probe of the benchmark sampled it.
		if _, seen := sampled[p.Run.Benchmark]; !seen {
			sampled[p.Run.Benchmark] = true
		}
		sampled[p.Run.Benchmark] = sampled[p.Run.Benchmark] && p.Run.CPUSampled
	}
	out := map[string]probeCosts{}
	for b, rows := range by {
		var ckW, ckP, dump, frozen, rCPU, rFirst, cCPU, cFirst []float64
		reps := 0
		for _, r := range rows {
			pr, wk := r.MechanismCPU()
			switch r.Kind {
			case ProbeCheckpoint:
				reps++
				ckW, ckP = append(ckW, durMS(wk)), append(ckP, durMS(pr))
				dump, frozen = append(dump, r.Seconds*1000), append(frozen, r.FrozenSeconds*1000)
			case ProbeRestore:
				rCPU, rFirst = append(rCPU, durMS(pr+wk)), append(rFirst, float64(r.ClientUS)/1000)
			case ProbeCold:
				cCPU, cFirst = append(cCPU, durMS(pr+wk)), append(cFirst, float64(r.ClientUS)/1000)
			}
		}
		if !sampled[b] {
			ckW, ckP, rCPU, cCPU = nil, nil, nil, nil
		}
		out[b] = probeCosts{ckCRIU: quantile(ckW, 0.5), ckProvider: quantile(ckP, 0.5), dump: quantile(dump, 0.5), frozen: quantile(frozen, 0.5),
			rstCPU: quantile(rCPU, 0.5), rstFirst: quantile(rFirst, 0.5), coldCPU: quantile(cCPU, 0.5), coldFirst: quantile(cFirst, 0.5), reps: reps}
	}
	return out
}

// ProbeTable: the mechanism's costs one event at a time.
func ProbeTable(ds *Dataset) Table {
	pc := probeSummary(ds)
	t := Table{
		Title: "Costs per event",
		Note: "From the probes (a checkpoint, a restore and a cold start measured one at a time, each against an idle window of the same " +
			"length), medians over repetitions and seeds. Checkpoint CPU: the workers' side (CRIU dumping, the frozen function) and the " +
			"provider's (packing with zstd, hashing, storing). Restore and cold start: CPU of all processes from scale-from-zero to the " +
			"first response, and that first request's client latency. Milliseconds.",
		Header: []string{"benchmark", "runtime", "reps", "checkpoint CPU: CRIU", "checkpoint CPU: pack+store", "dump", "frozen",
			"restore CPU", "restored 1st request", "cold start CPU", "cold 1st request"},
	}
	byRuntime := map[string][]probeCosts{}
	for _, b := range benchmarkOrderOf(pc) {
		c := pc[b]
		rt := runtimeOf(b)
		byRuntime[rt] = append(byRuntime[rt], c)
		t.Rows = append(t.Rows, []string{b, rt, strconv.Itoa(c.reps), fmtMS(c.ckCRIU), fmtMS(c.ckProvider), fmtMS(c.dump), fmtMS(c.frozen),
			fmtMS(c.rstCPU), fmtMS(c.rstFirst), fmtMS(c.coldCPU), fmtMS(c.coldFirst)})
	}
	for _, rt := range sortedKeys(byRuntime) {
		cs := byRuntime[rt]
		med := func(f func(probeCosts) float64) string {
			var xs []float64
			for _, c := range cs {
				xs = append(xs, f(c))
			}
			return fmtMS(quantile(xs, 0.5))
		}
		t.Rows = append(t.Rows, []string{rt + " median", rt, "", med(func(c probeCosts) float64 { return c.ckCRIU }),
			med(func(c probeCosts) float64 { return c.ckProvider }), med(func(c probeCosts) float64 { return c.dump }),
			med(func(c probeCosts) float64 { return c.frozen }), med(func(c probeCosts) float64 { return c.rstCPU }),
			med(func(c probeCosts) float64 { return c.rstFirst }), med(func(c probeCosts) float64 { return c.coldCPU }),
			med(func(c probeCosts) float64 { return c.coldFirst })})
	}
	return t
}

func benchmarkOrderOf[V any](m map[string]V) []string {
	var runs []RunResult
	for b := range m {
		runs = append(runs, RunResult{Chunk: Chunk{Benchmark: b}})
	}
	return benchmarkOrder(runs)
}

func runtimeOf(b string) string {
	if rt, ok := Catalog()[b]; ok {
		return rt
	}
	return "other"
}

// CostTable: per runtime, rate and strategy, the CPU the snapshots cost
// against the latency they saved.
func CostTable(ds *Dataset) Table {
	g, cs, pc := gridOf(ds), cells(ds), probeSummary(ds)
	t := Table{
		Title: "CPU spent against latency saved",
		Note: "Per runtime (means over its benchmarks of per-run values). Snapshot CPU: the run's checkpoints × the benchmark's checkpoint " +
			"CPU (CRIU + pack+store) plus its restores × restore CPU, from the probes. Saved: the run's total client latency under cold minus " +
			"under the strategy (seconds per run; negative: slower than cold), and per millisecond of snapshot CPU. Measured CPU: all the " +
			"provider's and workers' CPU per request over the whole run, from the per-request columns (cold's in the last column), which " +
			"also shows what a strategy saves or adds in cold starts and contention.",
		Header: []string{"runtime", "E", "strategy", "benchmarks", "checkpoints", "restores", "snapshot CPU s", "saved s", "saved/CPU",
			"measured CPU ms/request", "cold's CPU ms/request"},
	}
	runtimes := map[string][]string{}
	for _, b := range g.benchmarks {
		runtimes[runtimeOf(b)] = append(runtimes[runtimeOf(b)], b)
	}
	cpuPerReq := func(c cell) float64 {
		var cpu, n float64
		for _, r := range c.runs {
			if !r.CPUSampled {
				continue
			}
			for _, s := range r.Samples {
				if s.CPUProviderUS >= 0 && s.CPUWorkersUS >= 0 {
					cpu += float64(s.CPUProviderUS+s.CPUWorkersUS) / 1000
					n++
				}
			}
		}
		if n == 0 {
			return math.NaN()
		}
		return cpu / n
	}
	for _, rt := range sortedKeys(runtimes) {
		for _, e := range g.rates {
			for _, s := range g.strategies {
				if s == StrategyCold {
					continue
				}
				var ck, rs, cpu, saved, ratio, measured, coldMeasured []float64
				for _, b := range runtimes[rt] {
					c, cold := cs[cellKey{b, s, e}], cs[cellKey{b, StrategyCold, e}]
					if !c.ok() {
						continue
					}
					nCk := c.perRun(func(r RunResult) float64 { return float64(r.State.Checkpoints) })
					nRs := c.perRun(func(r RunResult) float64 { return float64(r.State.Restores) })
					ck, rs = append(ck, nCk), append(rs, nRs)
					// Seconds of client latency one run saved against cold.
					sv := math.NaN()
					if cold.ok() {
						sv = (mean(cold.latency) - mean(c.latency)) * float64(len(c.latency)) / float64(len(c.runs)) / 1000
						saved = append(saved, sv)
					}
					if p, ok := pc[b]; ok {
						snap := nCk*(p.ckCRIU+p.ckProvider) + nRs*p.rstCPU // ms
						cpu = append(cpu, snap/1000)
						if snap > 0 && !math.IsNaN(sv) {
							ratio = append(ratio, sv*1000/snap)
						}
					}
					measured = append(measured, cpuPerReq(c))
					if cold.ok() {
						coldMeasured = append(coldMeasured, cpuPerReq(cold))
					}
				}
				if len(ck) == 0 {
					continue
				}
				t.Rows = append(t.Rows, []string{rt, strconv.Itoa(e), strategyLabel(s, g.t), strconv.Itoa(len(ck)), fmtF(mean(ck), 1), fmtF(mean(rs), 1),
					fmtF(mean(cpu), 2), fmtF(mean(saved), 2), fmtF(mean(ratio), 1), fmtMS(mean(measured)), fmtMS(mean(coldMeasured))})
			}
		}
	}
	return t
}

// --- the report -------------------------------------------------------------

// ReportOptions adjust WriteReport.
type ReportOptions struct {
	// Title heads the README (default "Pronghorn evaluation").
	Title string
	// Command is the command line that regenerates the report, printed in
	// it (default: pronghorn bench eval report <dirs> -o <out>).
	Command string
	// NoCalibration skips fitting and running the simulator.
	NoCalibration bool
}

// WriteReport writes a report over the chunks of resultsDirs into outDir:
// README.md, figures/*.png and .svg, tables/*.csv. Everything in it is
// computed from the chunks' files; nothing is typed in.
func WriteReport(ctx context.Context, outDir string, resultsDirs []string, ro ReportOptions) error {
	ds, err := LoadResults(resultsDirs...)
	if err != nil {
		return err
	}
	if len(ds.Runs) == 0 && len(ds.Probes) == 0 {
		return fmt.Errorf("report: no completed chunks in %s", strings.Join(resultsDirs, ", "))
	}
	pub, err := PublishedValues()
	if err != nil {
		return err
	}
	if ro.Title == "" {
		ro.Title = "Pronghorn evaluation"
	}
	if ro.Command == "" {
		ro.Command = "pronghorn bench eval report " + strings.Join(resultsDirs, " ") + " -o " + outDir
	}
	figDir, tabDir := filepath.Join(outDir, "figures"), filepath.Join(outDir, "tables")
	for _, d := range []string{figDir, tabDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	// Files of an earlier report that this one does not write again
	// (a benchmark dropped from the data) would mislead: start clean.
	for _, d := range []string{figDir, tabDir} {
		old, _ := filepath.Glob(filepath.Join(d, "*"))
		for _, f := range old {
			os.Remove(f)
		}
	}
	g := gridOf(ds)
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", ro.Title)
	fmt.Fprintf(&b, "Generated from the CSV files of the results director%s below by\n\n```sh\n%s\n```\n\n"+
		"Every number, table and figure here is computed from those files; do not edit this directory by hand.\n\n",
		map[bool]string{true: "y", false: "ies"}[len(resultsDirs) == 1], ro.Command)

	tables := map[string]Table{}
	section := func(name string, t Table) error {
		tables[name] = t
		return t.WriteMarkdown(&b, 3)
	}

	// Setup.
	b.WriteString("## Setup\n\n")
	if err := section("environment", environmentTable(ds)); err != nil {
		return err
	}
	b.WriteString(protocolText(ds, g, resultsDirs, outDir))

	// Summary.
	b.WriteString("## Summary\n\n")
	if err := section("summary", SummaryTable(ds)); err != nil {
		return err
	}
	if err := section("geomean", GeomeanTable(ds)); err != nil {
		return err
	}
	if err := section("target", TargetTable(ds)); err != nil {
		return err
	}
	if err := section("headroom", HeadroomTable(ds)); err != nil {
		return err
	}
	b.WriteString(HeadroomVerdict(ds))
	if err := section("paired", PairedTable(ds)); err != nil {
		return err
	}
	b.WriteString(PairedVerdict(ds))
	if len(g.seeds) > 1 {
		if err := section("seeds", SeedsTable(ds)); err != nil {
			return err
		}
	}

	// Warm-up and floor.
	b.WriteString("## Warm-up curves and the floor\n\n")
	var figs []figure
	warm, err := warmupFigure(ds)
	if err != nil {
		return err
	}
	if warm != nil {
		figs = append(figs, *warm)
		b.WriteString("Client latency of each request of one cold worker that is never evicted, by lineage request number " +
			"(one panel per benchmark; a line per seed, log scale).\n\n")
		b.WriteString(figureMarkdown(*warm))
	}
	if err := section("floor", FloorTable(ds)); err != nil {
		return err
	}

	// CDFs.
	b.WriteString("## Latency distributions\n\n")
	b.WriteString("Client latency CDF per benchmark, one panel per eviction rate, one line per strategy, pooled over seeds.\n\n")
	for _, bench := range g.benchmarks {
		f, err := cdfFigure(ds, bench, g)
		if err != nil {
			return err
		}
		if f == nil {
			continue
		}
		figs = append(figs, *f)
		fmt.Fprintf(&b, "**%s**\n\n%s", bench, figureMarkdown(*f))
	}

	// Tables 4 and 5.
	b.WriteString("## Tables 4 and 5 beside the artifact\n\n")
	if err := section("table4", Table4(ds, pub)); err != nil {
		return err
	}
	if err := section("table5", Table5(ds, pub)); err != nil {
		return err
	}

	// Cost of the mechanism.
	b.WriteString("## Cost of the mechanism\n\n")
	if len(ds.Probes) == 0 {
		b.WriteString("No probe chunks in the data: per-event CPU costs are unknown.\n\n")
	}
	if err := section("probe", ProbeTable(ds)); err != nil {
		return err
	}
	if err := section("cost", CostTable(ds)); err != nil {
		return err
	}

	// Calibration.
	if !ro.NoCalibration {
		b.WriteString("## Simulator calibration\n\n")
		cals, err := Calibrate(ctx, ds)
		if err != nil {
			return err
		}
		if len(cals) == 0 {
			b.WriteString("No warm-up runs in the data: nothing to calibrate against.\n\n")
		} else {
			b.WriteString("The simulator (`pronghorn bench sim`, orchestrator/sim) fitted to the real traces of each benchmark, then run " +
				"through the real engine on the same grid. Left: the real warm-up curve, the exponential fit and a simulated " +
				"never-evicted worker. Right: simulated against real mean latency per strategy (color) and rate (circle E=20, " +
				"triangle E=4, square E=1).\n\n")
			cfigs, err := calibrationFigures(cals)
			if err != nil {
				return err
			}
			for _, f := range cfigs {
				figs = append(figs, f)
				b.WriteString(figureMarkdown(f))
			}
			if err := section("calibration", CalibrationTable(cals)); err != nil {
				return err
			}
			if err := section("calibration-compare", CalibrationCompareTable(cals, g.t)); err != nil {
				return err
			}
		}
	}

	b.WriteString("## Data\n\n")
	b.WriteString(dataText(ds, g, resultsDirs, outDir))
	// Reports in subdirectories (make eval-quick writes quick/ below the
	// full protocol's) are linked, so one page leads to all of them.
	if subs, _ := filepath.Glob(filepath.Join(outDir, "*", "README.md")); len(subs) > 0 {
		b.WriteString("\nOther reports: ")
		for i, s := range subs {
			rel := filepath.ToSlash(filepath.Join(filepath.Base(filepath.Dir(s)), "README.md"))
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "[%s](%s)", filepath.Base(filepath.Dir(s)), rel)
		}
		b.WriteString(".\n")
	}

	for _, f := range figs {
		if _, err := f.write(figDir); err != nil {
			return err
		}
	}
	for name, t := range tables {
		if err := writeFile(filepath.Join(tabDir, name+".csv"), t.WriteCSV); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(outDir, "README.md"), func(w io.Writer) error {
		_, err := io.WriteString(w, b.String())
		return err
	})
}

func figureMarkdown(f figure) string {
	return fmt.Sprintf("![%s](figures/%s.png)\n\n([SVG](figures/%s.svg))\n\n", f.Name, f.Name, f.Name)
}

// environmentTable lists the environments the chunks ran in, with how many
// chunks ran in each.
func environmentTable(ds *Dataset) Table {
	counts := map[string]int{}
	for _, r := range ds.Runs {
		counts[r.Env]++
	}
	for _, p := range ds.Probes {
		counts[p.Run.Env]++
	}
	hashes := sortedKeys(counts)
	t := Table{Title: "Machine and software", Header: []string{""}}
	for _, h := range hashes {
		t.Header = append(t.Header, fmt.Sprintf("%s (%d chunks)", h, counts[h]))
	}
	if len(hashes) > 1 {
		t.Note = "The chunks ran in more than one environment; compare within one."
	}
	for _, k := range environmentKeys() {
		row := []string{k}
		for _, h := range hashes {
			v := ds.Envs[h][k]
			if v == "" {
				v = "-"
			}
			row = append(row, v)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// protocolText states the grid and request counts, and warns about runs
// that started on a busy machine.
func protocolText(ds *Dataset, g grid, dirs []string, outDir string) string {
	var b strings.Builder
	var measured, failed, warm int
	intervals := map[string]float64{}
	for _, r := range ds.Runs {
		measured += len(r.Samples)
		failed += r.Errors
		if r.Kind == KindWarmup {
			warm += len(r.Samples)
		}
		intervals[runtimeOf(r.Benchmark)] = r.Protocol.IntervalMS
	}
	fmt.Fprintf(&b, "Protocol: %s × %s × E ∈ {%s} × seeds {%s}; %s sequential requests per run",
		listOr(g.benchmarks), strategiesText(g), joinInts(g.rates), joinInt64s(g.seeds), joinInts(g.requests))
	var iv []string
	for _, rt := range sortedKeys(intervals) {
		iv = append(iv, fmt.Sprintf("%s %g ms", rt, intervals[rt]))
	}
	if len(iv) > 0 {
		fmt.Fprintf(&b, ", paused after each response (%s)", strings.Join(iv, ", "))
	}
	fmt.Fprintf(&b, ". %d requests measured (%d of them in warm-up runs), %d failed; %d probe chunks.\n\n", measured, warm, failed, len(ds.Probes))
	busy := 0
	for _, r := range ds.Runs {
		cpus, _ := strconv.ParseFloat(ds.Envs[r.Env]["cpus"], 64)
		if cpus > 0 && r.LoadStart > 0.5*cpus {
			busy++
		}
	}
	if busy > 0 {
		fmt.Fprintf(&b, "**%d of %d runs started with a 1-minute load average above half the CPUs**: their latencies include "+
			"contention with other work on the machine.\n\n", busy, len(ds.Runs))
	}
	return b.String()
}

func strategiesText(g grid) string {
	var s []string
	for _, x := range g.strategies {
		s = append(s, strategyLabel(x, g.t))
	}
	return "{" + strings.Join(s, ", ") + "}"
}

func listOr(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	if len(xs) == 1 {
		return fmt.Sprintf("1 benchmark (%s)", xs[0])
	}
	return fmt.Sprintf("%d benchmarks (%s)", len(xs), strings.Join(xs, ", "))
}

func joinInts(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ", ")
}

func joinInt64s(xs []int64) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.FormatInt(x, 10))
	}
	return strings.Join(s, ", ")
}

// dataText lists where the data are and which chunks of the grid are
// missing.
func dataText(ds *Dataset, g grid, dirs []string, outDir string) string {
	var b strings.Builder
	for _, d := range dirs {
		rel, err := filepath.Rel(outDir, d)
		if err != nil {
			rel = d
		}
		fmt.Fprintf(&b, "- [`%s`](%s): one directory per chunk under `runs/<benchmark>/`, with `run.csv` (the run and its counters), "+
			"`requests.csv.zst` (one row per request: the artifact's columns, then seed, lineage request number, worker, position in "+
			"the worker, cold/restore start, CPU of the provider and of its workers since the previous response, send time) and "+
			"`events.csv.zst` (dumps, uploads, downloads, restores, checkpoints with their freeze time); `probe.csv` for probes; "+
			"`env/` the environments.\n", filepath.ToSlash(rel), filepath.ToSlash(rel))
	}
	b.WriteString("- `tables/`: every table above as CSV.\n\n")
	have := map[string]bool{}
	for _, r := range ds.Runs {
		have[r.Chunk.Dir()] = true
	}
	for _, p := range ds.Probes {
		have[p.Run.Chunk.Dir()] = true
	}
	// A seed may repeat only part of the grid (say, the two strategies
	// being compared): it is described, and only holes inside its own part
	// count as missing.
	var missing, partial []string
	for _, seed := range g.seeds {
		sg := gridOf(&Dataset{Runs: slices.DeleteFunc(slices.Clone(ds.Runs), func(r RunResult) bool { return r.Seed != seed })})
		if len(sg.benchmarks) != len(g.benchmarks) || len(sg.strategies) != len(g.strategies) || len(sg.rates) != len(g.rates) {
			partial = append(partial, fmt.Sprintf("seed %d covers %s × E ∈ {%s} on %s", seed, strategiesText(sg), joinInts(sg.rates), listOr(sg.benchmarks)))
		}
		for _, bench := range sg.benchmarks {
			for _, e := range sg.rates {
				for _, s := range sg.strategies {
					c := Chunk{Kind: KindRun, Benchmark: bench, Strategy: s, Rate: e, Seed: seed}
					if !have[c.Dir()] {
						missing = append(missing, c.String())
					}
				}
			}
		}
	}
	if len(partial) > 0 {
		fmt.Fprintf(&b, "Part of the grid only: %s.\n\n", strings.Join(partial, "; "))
	}
	if len(missing) > 0 {
		fmt.Fprintf(&b, "Runs missing from the grid (%d): %s.\n", len(missing), strings.Join(missing, "; "))
	} else {
		b.WriteString("The grid is complete.\n")
	}
	return b.String()
}

// warmupFigure draws the never-evicted worker's latency by request, one
// panel per benchmark, a line per seed.
func warmupFigure(ds *Dataset) (*figure, error) {
	f := figure{Name: "warmup", Cols: 3, PanelW: 4 * vg.Inch, PanelH: 3 * vg.Inch}
	for _, bench := range benchmarkOrder(ds.Runs) {
		var runs []RunResult
		for _, r := range ds.Runs {
			if r.Benchmark == bench && r.Kind == KindWarmup {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			continue
		}
		sort.Slice(runs, func(i, j int) bool { return runs[i].Seed < runs[j].Seed })
		p := newPanel(bench, "lineage request number", "client latency (ms, log)")
		logAxis(&p.Y)
		for i, r := range runs {
			var xs, ys []float64
			for _, s := range r.Samples {
				x := float64(s.Lineage)
				if s.Lineage < 1 {
					x = float64(s.Index + 1)
				}
				xs, ys = append(xs, x), append(ys, float64(s.ClientUS)/1000)
			}
			xs, ys = positive(xs, ys)
			if err := addLine(p, xs, ys, palette(i), vg.Points(0.8), fmt.Sprintf("seed %d", r.Seed)); err != nil {
				return nil, err
			}
		}
		f.Panels = append(f.Panels, p)
	}
	if len(f.Panels) == 0 {
		return nil, nil
	}
	return &f, nil
}

// cdfFigure draws one benchmark's CDFs, a panel per rate.
func cdfFigure(ds *Dataset, bench string, g grid) (*figure, error) {
	cs := cells(ds)
	f := figure{Name: "cdf-" + bench, Cols: len(g.rates), PanelW: 4 * vg.Inch, PanelH: 3 * vg.Inch}
	for _, e := range g.rates {
		var series []namedValues
		for _, s := range g.strategies {
			if c := cs[cellKey{bench, s, e}]; c.ok() {
				series = append(series, namedValues{Name: strategyLabel(s, g.t), Color: strategyColor(s), Values: c.latency})
			}
		}
		if len(series) == 0 {
			continue
		}
		p, err := cdfPanel(fmt.Sprintf("%s, E=%d", bench, e), series)
		if err != nil {
			return nil, err
		}
		f.Panels = append(f.Panels, p)
	}
	if len(f.Panels) == 0 {
		return nil, nil
	}
	f.Cols = len(f.Panels)
	return &f, nil
}

// writeFile writes via a temporary file and a rename, so a file is never
// seen half-written.
func writeFile(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
