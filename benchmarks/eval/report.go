package eval

import (
	"encoding/csv"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Table is a small rectangular result written as CSV, Markdown, HTML and
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

func (t Table) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", t.Title)
	if t.Note != "" {
		fmt.Fprintf(&b, "%s\n\n", t.Note)
	}
	b.WriteString("| " + strings.Join(t.Header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(t.Header)) + "\n")
	for _, r := range t.Rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("%s markdown: %w", t.Title, err)
	}
	return nil
}

func (t Table) writeHTML(b *strings.Builder) {
	fmt.Fprintf(b, "<h2>%s</h2>\n", html.EscapeString(t.Title))
	if t.Note != "" {
		fmt.Fprintf(b, "<p>%s</p>\n", html.EscapeString(t.Note))
	}
	b.WriteString("<table>\n<tr>")
	for _, h := range t.Header {
		fmt.Fprintf(b, "<th>%s</th>", html.EscapeString(h))
	}
	b.WriteString("</tr>\n")
	for _, r := range t.Rows {
		b.WriteString("<tr>")
		for _, c := range r {
			fmt.Fprintf(b, "<td>%s</td>", html.EscapeString(c))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n")
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

func fmtF(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func mb(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmtF(v/1e6, 1)
}

// SummaryTable: median and p90 client latency per benchmark × rate ×
// strategy, with the engine's counters, in the order the runs happened.
func SummaryTable(results []RunResult) Table {
	t := Table{
		Title:  "Latency summary",
		Note:   "Client latency is request sent to response read at the driver; server is the handler's own server_us; overhead = client - server. Counters are the engine's at the end of the run.",
		Header: []string{"benchmark", "E", "strategy", "n", "client_p50_ms", "client_p90_ms", "client_mean_ms", "server_p50_ms", "overhead_p50_ms", "cold", "restores", "checkpoints", "failed_r/c", "errors"},
	}
	for _, r := range results {
		var server, over, sum float64
		cl := clientMS(r.Samples)
		sv := make([]float64, len(r.Samples))
		ov := make([]float64, len(r.Samples))
		for i, s := range r.Samples {
			sv[i] = float64(s.ServerUS) / 1000
			ov[i] = float64(s.OverheadUS()) / 1000
			sum += cl[i]
		}
		server, over = quantile(sv, 0.5), quantile(ov, 0.5)
		mean := math.NaN()
		if len(cl) > 0 {
			mean = sum / float64(len(cl))
		}
		t.Rows = append(t.Rows, []string{
			r.Benchmark, strconv.Itoa(r.Rate), r.Strategy, strconv.Itoa(len(r.Samples)),
			fmtF(quantile(cl, 0.5), 2), fmtF(quantile(cl, 0.9), 2), fmtF(mean, 2), fmtF(server, 2), fmtF(over, 2),
			strconv.FormatUint(r.State.ColdStarts, 10), strconv.FormatUint(r.State.Restores, 10), strconv.FormatUint(r.State.Checkpoints, 10),
			fmt.Sprintf("%d/%d", r.State.FailedRestores, r.State.FailedCheckpoints), strconv.Itoa(r.Errors),
		})
	}
	return t
}

// RunsTable: the per-run snapshot costs behind Tables 4 and 5.
func RunsTable(results []RunResult) Table {
	t := Table{
		Title:  "Runs",
		Header: []string{"benchmark", "strategy", "rate", "function", "requests", "errors", "cold_starts", "restores", "checkpoints", "failed_restores", "failed_checkpoints", "peak_pool_bytes", "peak_pool_snapshots", "packed_bytes", "raw_bytes", "upload_bytes", "download_bytes", "dump_ms_p50", "restore_ms_p50", "upload_ms_p50", "download_ms_p50"},
	}
	for _, r := range results {
		t.Rows = append(t.Rows, []string{
			r.Benchmark, r.Strategy, strconv.Itoa(r.Rate), r.Function, strconv.Itoa(len(r.Samples)), strconv.Itoa(r.Errors),
			strconv.FormatUint(r.State.ColdStarts, 10), strconv.FormatUint(r.State.Restores, 10), strconv.FormatUint(r.State.Checkpoints, 10),
			strconv.FormatUint(r.State.FailedRestores, 10), strconv.FormatUint(r.State.FailedCheckpoints, 10),
			strconv.FormatInt(r.PeakPoolBytes, 10), strconv.Itoa(r.PeakPoolSnapshots),
			fmtF(r.PackedBytes, 0), fmtF(r.RawBytes, 0), fmtF(r.UploadBytes, 0), fmtF(r.DownloadBytes, 0),
			fmtF(quantile(r.Dump, 0.5)*1000, 1), fmtF(quantile(r.Restore, 0.5)*1000, 1),
			fmtF(quantile(r.Upload, 0.5)*1000, 1), fmtF(quantile(r.Download, 0.5)*1000, 1),
		})
	}
	return t
}

// benchmarksInOrder lists the benchmarks of results in first-seen order.
func benchmarksInOrder(results []RunResult) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range results {
		if !seen[r.Benchmark] {
			seen[r.Benchmark] = true
			out = append(out, r.Benchmark)
		}
	}
	return out
}

// bestSnapshotRun picks the run whose final pool answers "how many
// requests until the best snapshot": request-centric at the largest
// eviction rate (E=20 in the paper), where a worker lives longest and the
// pool spans the most of the warm-up curve.
func bestSnapshotRun(results []RunResult, bench string) (RunResult, bool) {
	var best RunResult
	found := false
	for _, r := range results {
		if r.Benchmark != bench || r.Strategy != StrategyRequestCentric {
			continue
		}
		if !found || r.Rate > best.Rate {
			best, found = r, true
		}
	}
	return best, found
}

// Table4 reports per benchmark the snapshot size, the median dump and
// restore times over every snapshot event of all its runs, and the lineage
// request number of the best-scored snapshot at the end of the
// request-centric run with the largest E.
func Table4(results []RunResult) Table {
	t := Table{
		Title: "Table 4: snapshot costs",
		Note: "Sizes: median over runs of the latest snapshot's stored (zstd-packed) and raw CRIU image size. Dump/restore: medians over all dump and restore events of the benchmark's runs " +
			"(exact per event: /metrics _sum/_count deltas scraped after every request). requests_to_best: lineage request number (requests the runtime had served since its cold start) " +
			"of the highest-scored pool entry when the request-centric run with the largest E ended.",
		Header: []string{"benchmark", "packed_MB", "raw_MB", "dump_ms_p50", "restore_ms_p50", "download_ms_p50", "dumps", "restores", "requests_to_best", "best_from"},
	}
	for _, b := range benchmarksInOrder(results) {
		var packed, raw, dump, restore, download []float64
		for _, r := range results {
			if r.Benchmark != b {
				continue
			}
			if r.PackedBytes > 0 {
				packed = append(packed, r.PackedBytes)
				raw = append(raw, r.RawBytes)
			}
			dump = append(dump, r.Dump...)
			restore = append(restore, r.Restore...)
			download = append(download, r.Download...)
		}
		toBest, from := "-", "-"
		if r, ok := bestSnapshotRun(results, b); ok {
			from = fmt.Sprintf("%s E=%d", r.Strategy, r.Rate)
			if len(r.State.Pool) > 0 {
				best := r.State.Pool[0]
				for _, p := range r.State.Pool[1:] {
					if p.Score > best.Score {
						best = p
					}
				}
				toBest = strconv.Itoa(best.RequestNumber)
			}
		}
		t.Rows = append(t.Rows, []string{
			b, mb(quantile(packed, 0.5)), mb(quantile(raw, 0.5)),
			fmtF(quantile(dump, 0.5)*1000, 1), fmtF(quantile(restore, 0.5)*1000, 1), fmtF(quantile(download, 0.5)*1000, 1),
			strconv.Itoa(len(dump)), strconv.Itoa(len(restore)), toBest, from,
		})
	}
	return t
}

// Table5 compares the storage and network cost of request-centric with
// fixed(T) per benchmark: the peak pool storage (max over rates of the
// pool's stored bytes, sampled after every request) and the snapshot bytes
// moved to and from the store, summed over the rates.
func Table5(results []RunResult) Table {
	t := Table{
		Title: "Table 5: storage and network",
		Note: "peak_storage: max over the runs at every E of the pool's stored bytes, sampled after every request. network: snapshot bytes uploaded + downloaded, summed over the runs at every E " +
			"(network_max_run: the largest single run). fixed is the snapshot-after-first-request baseline (T=1 by default).",
		Header: []string{"benchmark", "rc_peak_storage_MB", "rc_network_MB", "rc_network_max_run_MB", "fixed_peak_storage_MB", "fixed_network_MB", "fixed_network_max_run_MB", "storage_ratio", "network_ratio"},
	}
	type agg struct {
		ok                   bool
		peak, net, netMaxRun float64
	}
	for _, b := range benchmarksInOrder(results) {
		var rc, fx agg
		for _, r := range results {
			if r.Benchmark != b {
				continue
			}
			var a *agg
			switch r.Strategy {
			case StrategyRequestCentric:
				a = &rc
			case StrategyFixed:
				a = &fx
			default:
				continue
			}
			net := r.UploadBytes + r.DownloadBytes
			a.ok = true
			a.peak = math.Max(a.peak, float64(r.PeakPoolBytes))
			a.net += net
			a.netMaxRun = math.Max(a.netMaxRun, net)
		}
		if !rc.ok && !fx.ok {
			continue
		}
		cell := func(a agg, v float64) string {
			if !a.ok {
				return "-"
			}
			return fmtF(v/1e6, 1)
		}
		ratio := func(x, y float64) string {
			if !rc.ok || !fx.ok || y <= 0 {
				return "-"
			}
			return fmtF(x/y, 2) + "x"
		}
		t.Rows = append(t.Rows, []string{
			b, cell(rc, rc.peak), cell(rc, rc.net), cell(rc, rc.netMaxRun),
			cell(fx, fx.peak), cell(fx, fx.net), cell(fx, fx.netMaxRun),
			ratio(rc.peak, fx.peak), ratio(rc.net, fx.net),
		})
	}
	return t
}

// figure is one CDF plot: a (benchmark, rate) with a line per strategy.
type figure struct {
	Benchmark string
	Rate      int
	File      string // relative to the output directory
	Series    []Series
}

func figures(results []RunResult) []figure {
	var out []figure
	idx := map[string]int{}
	for _, r := range results {
		key := fmt.Sprintf("%s/%d", r.Benchmark, r.Rate)
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, figure{Benchmark: r.Benchmark, Rate: r.Rate, File: filepath.Join("figures", fmt.Sprintf("cdf-%s-e%d.svg", r.Benchmark, r.Rate))})
		}
		out[i].Series = append(out[i].Series, Series{Name: r.Strategy, Values: clientMS(r.Samples)})
	}
	return out
}

// WriteReport writes runs.csv, table4/5 (.csv, .md), summary (.csv, .md),
// one CDF SVG per (benchmark, rate) and index.html into dir, and prints
// the summary table to stdout.
func WriteReport(dir string, results []RunResult, stdout io.Writer) error {
	if err := os.MkdirAll(filepath.Join(dir, "figures"), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	summary, t4, t5, runs := SummaryTable(results), Table4(results), Table5(results), RunsTable(results)
	for name, t := range map[string]Table{"summary": summary, "table4": t4, "table5": t5, "runs": runs} {
		if err := writeFile(filepath.Join(dir, name+".csv"), t.WriteCSV); err != nil {
			return err
		}
		if name != "runs" {
			if err := writeFile(filepath.Join(dir, name+".md"), t.WriteMarkdown); err != nil {
				return err
			}
		}
	}
	figs := figures(results)
	for _, f := range figs {
		title := fmt.Sprintf("%s, E=%d", f.Benchmark, f.Rate)
		if err := writeFile(filepath.Join(dir, f.File), func(w io.Writer) error { return WriteCDFSVG(w, title, f.Series) }); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(dir, "index.html"), func(w io.Writer) error {
		return writeIndex(w, figs, []Table{summary, t4, t5})
	}); err != nil {
		return err
	}
	if stdout != nil {
		fmt.Fprintln(stdout)
		if err := summary.WriteText(stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nresults in %s (index.html, latency.csv, summary/table4/table5 .csv/.md, runs.csv, figures/)\n", dir)
	}
	return nil
}

func writeIndex(w io.Writer, figs []figure, tables []Table) error {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Pronghorn evaluation</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}.figs img{width:100%}</style>
</head><body><h1>Pronghorn evaluation</h1>
<p>Per-request data: <a href="latency.csv">latency.csv</a>; per-run costs: <a href="runs.csv">runs.csv</a>.</p>
<h2>Latency CDFs (one line per strategy)</h2>
`)
	// Group figures by benchmark, one row per benchmark, rates as columns.
	byBench := map[string][]figure{}
	var order []string
	for _, f := range figs {
		if _, ok := byBench[f.Benchmark]; !ok {
			order = append(order, f.Benchmark)
		}
		byBench[f.Benchmark] = append(byBench[f.Benchmark], f)
	}
	for _, bench := range order {
		fs := byBench[bench]
		sort.SliceStable(fs, func(i, j int) bool { return fs[i].Rate > fs[j].Rate })
		fmt.Fprintf(&b, "<h3>%s</h3>\n<div class=\"figs\">\n", html.EscapeString(bench))
		for _, f := range fs {
			src := filepath.ToSlash(f.File)
			fmt.Fprintf(&b, "<a href=\"%s\"><img src=\"%s\" alt=\"%s E=%d\"></a>\n", html.EscapeString(src), html.EscapeString(src), html.EscapeString(bench), f.Rate)
		}
		b.WriteString("</div>\n")
	}
	for _, t := range tables {
		t.writeHTML(&b)
	}
	b.WriteString("</body></html>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("index.html: %w", err)
	}
	return nil
}

// writeFile writes via a temporary file and a rename, so a report is never
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
