package local

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the backend's Prometheus collectors: replica restarts,
// and the snapshot mechanism's costs and the engine's counters per function.
func (b *Backend) Collectors() []prometheus.Collector {
	return []prometheus.Collector{b.restarts, b.coord.Collector()}
}
