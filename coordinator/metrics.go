package coordinator

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics measure the snapshot mechanism itself: the costs the paper's
// Tables 4 and 5 report (dump and restore time, image size, bytes moved to
// and from the store).
type metrics struct {
	dump, upload, download, restore *prometheus.HistogramVec
	packedBytes, rawBytes           *prometheus.GaugeVec
	// inProgress lets a reader of the counters know that a checkpoint
	// already begun has yet to be counted.
	inProgress  *prometheus.GaugeVec
	transferred *prometheus.CounterVec
}

func newMetrics() *metrics {
	buckets := prometheus.ExponentialBuckets(0.005, 2, 12) // 5 ms .. ~10 s
	hist := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pronghorn_" + name, Help: help, Buckets: buckets}, []string{"function_name"})
	}
	return &metrics{
		dump:        hist("dump_seconds", "CRIU dump time (the function is frozen for part of it)."),
		upload:      hist("upload_seconds", "Time to pack and store a snapshot."),
		download:    hist("download_seconds", "Time to fetch, verify and unpack a snapshot."),
		restore:     hist("restore_seconds", "CRIU restore time inside the new worker."),
		packedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pronghorn_snapshot_packed_bytes", Help: "Stored size of the function's latest snapshot."}, []string{"function_name"}),
		rawBytes:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pronghorn_snapshot_raw_bytes", Help: "CRIU image size of the function's latest snapshot."}, []string{"function_name"}),
		inProgress:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pronghorn_checkpoints_in_progress", Help: "Checkpoints begun and not yet stored or failed."}, []string{"function_name"}),
		transferred: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pronghorn_snapshot_transfer_bytes_total", Help: "Snapshot bytes moved to (upload) and from (download) the store."}, []string{"function_name", "direction"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.dump, m.upload, m.download, m.restore, m.packedBytes, m.rawBytes, m.inProgress, m.transferred}
}

// engineCollector exposes the engine's per-function counters at scrape
// time, for the version serving now, together with the mechanism's costs.
type engineCollector struct {
	c     *Coordinator
	descs map[string]*prometheus.Desc
}

var engineCounters = []struct{ name, help string }{
	{"cold_starts_total", "Workers started cold."},
	{"restores_total", "Workers started from a snapshot."},
	{"checkpoints_total", "Snapshots taken and added to the pool."},
	{"failed_restores_total", "Snapshots that could not be restored (the worker started cold)."},
	{"failed_checkpoints_total", "Checkpoints that failed (the worker kept serving)."},
}

// Collector returns a Prometheus collector of the snapshot mechanism's
// costs and the engine's counters and pool sizes per function. An update
// to a new version starts its counters again, which Prometheus treats as
// a counter reset.
func (c *Coordinator) Collector() prometheus.Collector {
	ec := &engineCollector{c: c, descs: map[string]*prometheus.Desc{}}
	for _, m := range engineCounters {
		ec.descs[m.name] = prometheus.NewDesc("pronghorn_"+m.name, m.help, []string{"function_name"}, nil)
	}
	ec.descs["pool_snapshots"] = prometheus.NewDesc("pronghorn_pool_snapshots", "Snapshots in the function's pool.", []string{"function_name"}, nil)
	ec.descs["pool_bytes"] = prometheus.NewDesc("pronghorn_pool_bytes", "Stored bytes of the function's pool.", []string{"function_name"}, nil)
	return ec
}

func (ec *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range ec.descs {
		ch <- d
	}
	for _, m := range ec.c.metrics.collectors() {
		m.Describe(ch)
	}
}

func (ec *engineCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range ec.c.metrics.collectors() {
		m.Collect(ch)
	}
	if !ec.c.Enabled() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	type current struct{ key, display string }
	var fns []current
	ec.c.fnMu.Lock()
	for _, f := range ec.c.functions {
		f.mu.Lock()
		if f.current != "" {
			fns = append(fns, current{f.current, f.display})
		}
		f.mu.Unlock()
	}
	ec.c.fnMu.Unlock()
	for _, f := range fns {
		st, err := ec.c.cfg.Engine.Inspect(ctx, f.key)
		if err != nil {
			continue
		}
		values := map[string]uint64{
			"cold_starts_total": st.ColdStarts, "restores_total": st.Restores, "checkpoints_total": st.Checkpoints,
			"failed_restores_total": st.FailedRestores, "failed_checkpoints_total": st.FailedCheckpoints,
		}
		for name, v := range values {
			ch <- prometheus.MustNewConstMetric(ec.descs[name], prometheus.CounterValue, float64(v), f.display)
		}
		var bytes int64
		for _, s := range st.Pool {
			bytes += s.SizeBytes
		}
		ch <- prometheus.MustNewConstMetric(ec.descs["pool_snapshots"], prometheus.GaugeValue, float64(len(st.Pool)), f.display)
		ch <- prometheus.MustNewConstMetric(ec.descs["pool_bytes"], prometheus.GaugeValue, float64(bytes), f.display)
	}
}
