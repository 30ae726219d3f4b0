package local

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// snapshotMetrics measure the snapshot mechanism itself — the costs the
// paper's Tables 4 and 5 report (dump and restore time, image size, bytes
// moved to and from the store) — and replica restarts.
type snapshotMetrics struct {
	dump, upload, download, restore *prometheus.HistogramVec
	packedBytes, rawBytes           *prometheus.GaugeVec
	transferred                     *prometheus.CounterVec
	restarts                        *prometheus.CounterVec
}

func newSnapshotMetrics() *snapshotMetrics {
	buckets := prometheus.ExponentialBuckets(0.005, 2, 12) // 5 ms .. ~10 s
	hist := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pronghorn_" + name, Help: help, Buckets: buckets}, []string{"function_name"})
	}
	return &snapshotMetrics{
		dump:        hist("dump_seconds", "CRIU dump time (the function is frozen for part of it)."),
		upload:      hist("upload_seconds", "Time to pack and store a snapshot."),
		download:    hist("download_seconds", "Time to fetch, verify and unpack a snapshot."),
		restore:     hist("restore_seconds", "CRIU restore time inside the new worker."),
		packedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pronghorn_snapshot_packed_bytes", Help: "Stored size of the function's latest snapshot."}, []string{"function_name"}),
		rawBytes:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pronghorn_snapshot_raw_bytes", Help: "CRIU image size of the function's latest snapshot."}, []string{"function_name"}),
		transferred: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pronghorn_snapshot_transfer_bytes_total", Help: "Snapshot bytes moved to (upload) and from (download) the store."}, []string{"function_name", "direction"}),
		restarts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pronghorn_replica_restarts_total", Help: "Replicas that died or never became ready and were replaced."}, []string{"function_name"}),
	}
}

func (m *snapshotMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.dump, m.upload, m.download, m.restore, m.packedBytes, m.rawBytes, m.transferred, m.restarts}
}

// engineCollector exposes the engine's per-function counters at scrape time,
// read from bbolt, so they survive provider restarts like the engine does,
// together with the snapshot mechanism's own measurements.
type engineCollector struct {
	b     *Backend
	descs map[string]*prometheus.Desc
}

var engineCounters = []struct{ name, help string }{
	{"cold_starts_total", "Workers started cold."},
	{"restores_total", "Workers started from a snapshot."},
	{"checkpoints_total", "Snapshots taken and added to the pool."},
	{"failed_restores_total", "Snapshots that could not be restored (the worker started cold)."},
	{"failed_checkpoints_total", "Checkpoints that failed (the worker kept serving)."},
}

// Collector returns a Prometheus collector of the orchestration engine's
// counters and pool sizes per function.
func (b *Backend) Collector() prometheus.Collector {
	c := &engineCollector{b: b, descs: map[string]*prometheus.Desc{}}
	for _, m := range engineCounters {
		c.descs[m.name] = prometheus.NewDesc("pronghorn_"+m.name, m.help, []string{"function_name"}, nil)
	}
	c.descs["pool_snapshots"] = prometheus.NewDesc("pronghorn_pool_snapshots", "Snapshots in the function's pool.", []string{"function_name"}, nil)
	c.descs["pool_bytes"] = prometheus.NewDesc("pronghorn_pool_bytes", "Stored bytes of the function's pool.", []string{"function_name"}, nil)
	return c
}

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	for _, m := range c.b.metrics.collectors() {
		m.Describe(ch)
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.b.metrics.collectors() {
		m.Collect(ch)
	}
	if c.b.cfg.Engine == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.b.mu.RLock()
	fns := make([]*function, 0, len(c.b.functions))
	for _, f := range c.b.functions {
		fns = append(fns, f)
	}
	c.b.mu.RUnlock()
	for _, f := range fns {
		// The counters of the version serving now; an update starts them
		// again, which Prometheus treats as a counter reset.
		f.mu.Lock()
		key := f.current
		f.mu.Unlock()
		if key == "" {
			continue
		}
		st, err := c.b.cfg.Engine.Inspect(ctx, key)
		if err != nil {
			continue
		}
		values := map[string]uint64{
			"cold_starts_total": st.ColdStarts, "restores_total": st.Restores, "checkpoints_total": st.Checkpoints,
			"failed_restores_total": st.FailedRestores, "failed_checkpoints_total": st.FailedCheckpoints,
		}
		for name, v := range values {
			ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), f.display)
		}
		var bytes int64
		for _, s := range st.Pool {
			bytes += s.SizeBytes
		}
		ch <- prometheus.MustNewConstMetric(c.descs["pool_snapshots"], prometheus.GaugeValue, float64(len(st.Pool)), f.display)
		ch <- prometheus.MustNewConstMetric(c.descs["pool_bytes"], prometheus.GaugeValue, float64(bytes), f.display)
	}
}
