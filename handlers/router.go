package handlers

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	bootstrap "github.com/openfaas/faas-provider"
	"github.com/openfaas/faas-provider/auth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// Config is what the HTTP layer needs from the provider's configuration.
type Config struct {
	// BasicAuth, when set, protects every /system/* route exactly as
	// faas-provider does; /function/*, /healthz and /metrics stay open.
	BasicAuth *auth.BasicAuthCredentials

	// WriteTimeout bounds a log stream, as in faas-netes, where it is also
	// the http.Server's write timeout (main sets that one).
	WriteTimeout time.Duration

	// MaxBodyBytes bounds JSON bodies on /system/* (413 beyond it);
	// 0 means DefaultMaxBodyBytes. Invocation bodies are not limited here.
	MaxBodyBytes int64

	// MaxReplicas is the provider-wide replica ceiling: a deploy or update
	// whose com.openfaas.scale.max or scale.min goes beyond it, and a scale
	// request above it, get a 400. 0 means funcspec.DefaultMaxReplicas.
	MaxReplicas uint64

	// InvokeTimeout bounds one invocation including waiting for a replica;
	// 0 means no limit beyond the client's and the server's.
	InvokeTimeout time.Duration

	// ProviderName, Version, SHA and Orchestration ("local" or "kubernetes")
	// are reported by /system/info.
	ProviderName  string
	Version       string
	SHA           string
	Orchestration string

	// DefaultNamespace is where functions live when a request names none;
	// empty means DefaultNamespace ("openfaas-fn").
	DefaultNamespace string

	// Gatherer serves /metrics. When nil, the Registerer given to NewRouter
	// is used if it is also a Gatherer (as *prometheus.Registry is).
	Gatherer prometheus.Gatherer

	// ScrapeTimeout bounds the backend calls behind gateway_service_count;
	// 0 means DefaultScrapeTimeout.
	ScrapeTimeout time.Duration

	// Extra, when set, is called with the router after the standard routes
	// are registered, to add provider-specific ones. system wraps a handler
	// the way every /system route is wrapped (basic auth when enabled, HTTP
	// metrics labelled with the route's path template); use it for routes
	// under /system/.
	Extra func(r *mux.Router, system func(http.HandlerFunc) http.HandlerFunc)
}

// NewRouter builds the faas-provider API over b with the same paths, methods
// and name pattern as faas-provider's bootstrap.Serve. It uses its own
// *mux.Router (bootstrap's is package-global and Serve calls log.Fatal) and
// registers its metrics on reg, so it can be built more than once per
// process (tests, restarts). It fails if reg already holds these metrics.
func NewRouter(cfg Config, b provider.Backend, reg prometheus.Registerer) (http.Handler, error) {
	if b == nil {
		return nil, fmt.Errorf("handlers: nil backend")
	}
	gatherer := cfg.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	}
	if gatherer == nil {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, fmt.Errorf("handlers: the Registerer is not a Gatherer; set Config.Gatherer")
		}
		gatherer = g
	}

	defaults := RequestDefaults{Namespace: cfg.DefaultNamespace, MaxBodyBytes: cfg.MaxBodyBytes, MaxReplicas: cfg.MaxReplicas}
	ns := defaults.namespace()

	m, err := newMetrics(reg, b, ns, cfg.ScrapeTimeout)
	if err != nil {
		return nil, fmt.Errorf("handlers: registering metrics: %w", err)
	}

	// system is faas-provider's wrapping of a /system handler: metrics
	// outside, so 401s are counted too, then basic auth.
	system := func(h http.HandlerFunc, path string) http.HandlerFunc {
		if cfg.BasicAuth != nil {
			h = auth.DecorateWithBasicAuth(h, cfg.BasicAuth)
		}
		return m.instrument(h, path)
	}

	const name = "{name:[" + bootstrap.NameExpression + "]+}"
	r := mux.NewRouter()
	// mux answers a known path with the wrong method with an empty 405; the
	// API promises a reason with every 4xx.
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		httpError(w, http.StatusMethodNotAllowed, "method %s is not allowed on %s", req.Method, req.URL.Path)
	})

	r.HandleFunc("/system/functions", system(MakeListHandler(b, defaults), "")).Methods(http.MethodGet)
	r.HandleFunc("/system/functions", system(MakeDeployHandler(b, defaults), "")).Methods(http.MethodPost)
	r.HandleFunc("/system/functions", system(MakeDeleteHandler(b, defaults), "")).Methods(http.MethodDelete)
	r.HandleFunc("/system/functions", system(MakeUpdateHandler(b, defaults), "")).Methods(http.MethodPut)

	r.HandleFunc("/system/function/"+name,
		system(MakeStatusHandler(b, defaults), "/system/function")).Methods(http.MethodGet)
	r.HandleFunc("/system/scale-function/"+name,
		system(MakeScaleHandler(b, defaults), "/system/scale-function")).Methods(http.MethodPost)

	r.HandleFunc("/system/info", system(MakeInfoHandler(cfg.ProviderName, cfg.Orchestration, cfg.Version, cfg.SHA), "")).
		Methods(http.MethodGet)

	r.HandleFunc("/system/secrets", system(MakeSecretsHandler(b, defaults), "")).
		Methods(http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete)

	logTimeout := cfg.WriteTimeout
	r.HandleFunc("/system/logs", system(MakeLogsHandler(b, defaults, logTimeout), "")).Methods(http.MethodGet)

	r.HandleFunc("/system/namespaces", system(MakeNamespacesHandler(b), "")).Methods(http.MethodGet)
	r.HandleFunc("/system/namespace/{name:["+bootstrap.NameExpression+"]*}",
		system(namespaceMutationNotImplemented, "/system/namespace")).Methods(http.MethodGet)

	if i, ok := b.(Inspector); ok {
		r.HandleFunc(InspectPath+name, system(MakeInspectHandler(i, defaults), InspectPath)).Methods(http.MethodGet)
	}

	invoke := MakeInvokeHandler(b, InvokeOptions{
		DefaultNamespace: ns,
		Timeout:          cfg.InvokeTimeout,
		Observer:         m,
	})
	r.HandleFunc("/function/"+name, invoke)
	r.HandleFunc("/function/"+name+"/", invoke)
	r.HandleFunc("/function/"+name+"/{params:.*}", invoke)

	r.HandleFunc("/healthz", MakeHealthHandler()).Methods(http.MethodGet)
	r.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))

	if cfg.Extra != nil {
		cfg.Extra(r, func(h http.HandlerFunc) http.HandlerFunc {
			return system(h, useRouteTemplate)
		})
	}
	return r, nil
}
