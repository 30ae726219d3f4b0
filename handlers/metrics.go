package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	fhttputil "github.com/openfaas/faas-provider/httputil"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultScrapeTimeout bounds the backend calls made while /metrics is
// scraped, so a stuck backend makes the replica gauge go missing rather than
// the scrape hang.
const DefaultScrapeTimeout = 2 * time.Second

// InvocationObserver records one finished invocation. code is the status the
// client got; elapsed covers the whole call, replica acquisition included.
type InvocationObserver interface {
	ObserveInvocation(namespace, name string, code int, elapsed time.Duration)
}

// metrics holds the provider's Prometheus series. The names and labels are
// the OpenFaaS gateway's (gateway_*) and faas-provider's (provider_http_*)
// so existing dashboards and the gateway's alert rules work unchanged.
type metrics struct {
	invocations *prometheus.CounterVec
	seconds     *prometheus.HistogramVec

	httpRequests *prometheus.CounterVec
	httpSeconds  *prometheus.HistogramVec
}

// replicaSource is what the replica gauge needs from the backend.
type replicaSource interface {
	NamespaceLister
	Lister
}

func newMetrics(reg prometheus.Registerer, src replicaSource, defaultNS string, scrapeTimeout time.Duration) (*metrics, error) {
	m := &metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_function_invocation_total",
			Help: "Function invocations by function (name.namespace) and status code.",
		}, []string{"function_name", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_functions_seconds",
			Help:    "Function invocation time in seconds, as seen by the provider.",
			Buckets: prometheus.DefBuckets,
		}, []string{"function_name", "code"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "provider",
			Name:      "http_requests_total",
			Help:      "Total number of HTTP requests.",
		}, []string{"code", "method", "path"}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: "provider",
			Name:      "http_request_duration_seconds",
			Help:      "Seconds spent serving HTTP requests.",
			Buckets:   prometheus.DefBuckets,
		}, []string{"code", "method", "path"}),
	}
	if scrapeTimeout <= 0 {
		scrapeTimeout = DefaultScrapeTimeout
	}
	replicas := &replicaCollector{
		src:       src,
		defaultNS: defaultNS,
		timeout:   scrapeTimeout,
		desc: prometheus.NewDesc("gateway_service_count",
			"Desired replicas of each function (name.namespace).",
			[]string{"function_name"}, nil),
	}
	for _, c := range []prometheus.Collector{m.invocations, m.seconds, m.httpRequests, m.httpSeconds, replicas} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveInvocation implements InvocationObserver.
func (m *metrics) ObserveInvocation(namespace, name string, code int, elapsed time.Duration) {
	fn := name + "." + namespace
	c := codeLabel(code)
	m.invocations.WithLabelValues(fn, c).Inc()
	m.seconds.WithLabelValues(fn, c).Observe(elapsed.Seconds())
}

// useRouteTemplate as instrument's path labels requests with their mux route
// template, which is bounded whatever the route's variables are.
const useRouteTemplate = "\x00template"

// instrument records R.E.D. metrics for a /system route as faas-provider's
// bootstrap does; path replaces the URL path as label for parameterised
// routes so each function does not get its own series. The interceptor keeps
// Flusher and CloseNotifier, which the log stream needs.
func (m *metrics) instrument(next http.HandlerFunc, path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := fhttputil.NewHttpWriteInterceptor(w)
		next(ww, r)
		label := path
		switch label {
		case "":
			label = r.URL.Path
		case useRouteTemplate:
			label = r.URL.Path
			if route := mux.CurrentRoute(r); route != nil {
				if t, err := route.GetPathTemplate(); err == nil {
					label = t
				}
			}
		}
		c := codeLabel(ww.Status())
		m.httpRequests.WithLabelValues(c, r.Method, label).Inc()
		m.httpSeconds.WithLabelValues(c, r.Method, label).Observe(time.Since(start).Seconds())
	}
}

// codeLabels avoids formatting the status code on every invocation.
var codeLabels = func() (t [600]string) {
	for i := 100; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func codeLabel(code int) string {
	if code >= 100 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// replicaCollector reports gateway_service_count from the backend at scrape
// time, so the gauge can never drift from what the backend says (a gauge set
// from the scale handler would miss restarts, scale-from-zero and
// backend-internal scaling).
type replicaCollector struct {
	src       replicaSource
	defaultNS string
	timeout   time.Duration
	desc      *prometheus.Desc
}

func (c *replicaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *replicaCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	nss, err := c.src.Namespaces(ctx)
	if err != nil {
		slog.Warn("metrics: listing namespaces failed", "err", err)
	}
	if len(nss) == 0 {
		nss = []string{c.defaultNS}
	}
	// A series emitted twice fails the whole scrape, so duplicates from the
	// backend are dropped here.
	seen := make(map[string]struct{})
	for _, ns := range nss {
		fns, err := c.src.Functions(ctx, ns)
		if err != nil {
			slog.Warn("metrics: listing functions failed", "namespace", ns, "err", err)
			continue
		}
		for _, fn := range fns {
			label := fn.Name + "." + ns
			if _, dup := seen[label]; dup {
				continue
			}
			seen[label] = struct{}{}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(fn.Replicas), label)
		}
	}
}
