package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// Acquirer hands out a lease on a ready replica of a function, scaling it
// from zero if needed. errdefs.ErrNotFound: no such function;
// errdefs.ErrUnavailable: no replica became ready in time.
type Acquirer interface {
	Acquire(ctx context.Context, namespace, name string) (provider.Lease, error)
}

// InvokeOptions configures MakeInvokeHandler.
type InvokeOptions struct {
	// DefaultNamespace applies when the path has no ".namespace" suffix and
	// the query no ?namespace=.
	DefaultNamespace string
	// Timeout bounds one invocation, replica acquisition included; zero
	// leaves it to the client and the server's WriteTimeout.
	Timeout time.Duration
	// Observer, when set, is told about every invocation of an existing
	// function (metrics).
	Observer InvocationObserver
}

// Header names shared with the agent and OpenFaaS.
const (
	// durationHeader is how the agent (like of-watchdog) reports the
	// function's own time in seconds.
	durationHeader = "X-Duration-Seconds"
	// internalHeader marks responses produced by the provider rather than
	// the function, as faas-provider's proxy does, so clients can tell a
	// provider 502 from a function's own 502.
	internalHeader = "X-Openfaas-Internal"
)

// statusClientClosedRequest is what an invocation's Outcome and metrics record
// when the client went away before the function answered: a disconnecting
// client is not a replica failure, so it must not look like a 5xx (nginx
// uses the same code for the same reason).
const statusClientClosedRequest = 499

// MakeInvokeHandler serves /function/{name}[/{params}] for any method: it
// acquires a replica and streams the request to it and the answer back
// through httputil.ReverseProxy (hop-by-hop headers stripped,
// X-Forwarded-For/-Host/-Proto set, Upgrade supported). The function's
// namespace comes from a "name.namespace" path segment like the gateway
// sends, else ?namespace=, else the default.
func MakeInvokeHandler(a Acquirer, opts InvokeOptions) http.HandlerFunc {
	h := &invoker{
		acq: a, opts: opts,
		buffers: newBufferPool(256, 32<<10),
		errLog:  log.New(io.Discard, "", 0),
	}
	if h.opts.DefaultNamespace == "" {
		h.opts.DefaultNamespace = DefaultNamespace
	}
	h.calls.New = func() any { return h.newProxyCall() }
	return h.serve
}

type invoker struct {
	acq   Acquirer
	opts  InvokeOptions
	calls sync.Pool // of *proxyCall
	// buffers recycles ReverseProxy's body-copy buffers, which it would
	// otherwise allocate (32 KiB) per invocation.
	buffers *bufferPool
	// errLog silences ReverseProxy's own logging: errorHandler reports.
	errLog *log.Logger
}

func (h *invoker) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	vars := mux.Vars(r)
	name, ns := splitFunctionName(vars["name"], lastQueryValue(r, "namespace"), h.opts.DefaultNamespace)
	if err := validateFunctionName(name); err != nil {
		proxyError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err := validateNamespace(ns); err != nil {
		proxyError(w, http.StatusBadRequest, "%v", err)
		return
	}

	if h.opts.Timeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
		defer cancel()
		r = r.WithContext(ctx)
	}

	lease, err := h.acq.Acquire(r.Context(), ns, name)
	if err != nil {
		status := acquireStatus(r.Context(), err)
		proxyError(w, status, "function %s.%s: %v", name, ns, err)
		// Unknown names are not recorded: anyone can invent them, and each
		// would become a metric series forever.
		if status != http.StatusNotFound && h.opts.Observer != nil {
			h.opts.Observer.ObserveInvocation(ns, name, status, time.Since(start))
		}
		return
	}
	h.forward(w, r, lease, ns, name, vars["params"], start)
}

// forward proxies to the leased replica and releases the lease exactly once,
// also when ReverseProxy aborts with a panic (it panics with
// http.ErrAbortHandler when the body copy fails mid-stream, e.g. the client
// hung up); the panic is re-raised so net/http still aborts the connection.
func (h *invoker) forward(w http.ResponseWriter, r *http.Request, lease provider.Lease, ns, name, params string, start time.Time) {
	target := lease.URL()
	if target == nil {
		// A backend bug, but the lease must still go back.
		err := fmt.Errorf("lease for %s.%s has no URL", name, ns)
		lease.Release(provider.Outcome{StatusCode: http.StatusBadGateway, Err: err})
		proxyError(w, http.StatusBadGateway, "function %s.%s: %v", name, ns, err)
		return
	}
	call := h.calls.Get().(*proxyCall)
	call.target = target
	call.params = params
	call.name, call.ns = name, ns
	call.rp.Transport = lease.Transport()

	began := time.Now()
	defer func() {
		p := recover()
		out := provider.Outcome{
			StatusCode: call.status,
			Upstream:   call.upstream,
			Total:      time.Since(began),
			Err:        call.err,
		}
		if p != nil {
			if out.Err == nil {
				out.Err = fmt.Errorf("invocation aborted: %v", p)
			}
			if out.StatusCode == 0 {
				out.StatusCode = http.StatusBadGateway
			}
			if r.Context().Err() != nil {
				out.StatusCode = statusClientClosedRequest
			}
		}
		lease.Release(out)
		if h.opts.Observer != nil {
			h.opts.Observer.ObserveInvocation(ns, name, out.StatusCode, time.Since(start))
		}
		if p != nil {
			panic(p)
		}
		call.reset()
		h.calls.Put(call)
	}()
	call.rp.ServeHTTP(w, r)
}

// splitFunctionName splits "name.namespace" at the last dot, as faas-netes'
// resolver does; otherwise the query or default namespace applies.
func splitFunctionName(full, queryNS, defaultNS string) (name, ns string) {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[:i], full[i+1:]
	}
	if queryNS != "" {
		return full, queryNS
	}
	return full, defaultNS
}

// acquireStatus maps errdefs kinds, and treats running out of time while
// waiting for a replica as "unavailable": the function exists, it just had no
// ready replica within the deadline.
func acquireStatus(ctx context.Context, err error) int {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		if ctx.Err() == context.Canceled {
			return statusClientClosedRequest
		}
		return http.StatusServiceUnavailable
	}
	return errdefs.HTTPStatus(err)
}

func proxyError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set(internalHeader, "proxy")
	httpError(w, status, format, args...)
}

// proxyCall is the per-invocation state of the reverse proxy. Each one owns a
// ReverseProxy whose callbacks are bound to it once, at creation; calls are
// pooled, so the hot path allocates neither a proxy nor closures, and no
// context value is needed to route a request to its lease's Transport.
type proxyCall struct {
	rp       httputil.ReverseProxy
	target   *url.URL
	params   string
	name, ns string

	status   int
	upstream time.Duration
	err      error
}

func (h *invoker) newProxyCall() *proxyCall {
	c := &proxyCall{}
	c.rp.Rewrite = c.rewrite
	c.rp.ModifyResponse = c.modifyResponse
	c.rp.ErrorHandler = c.errorHandler
	c.rp.BufferPool = h.buffers
	c.rp.ErrorLog = h.errLog
	// FlushInterval stays 0 on purpose: ReverseProxy already flushes every
	// write for responses without a Content-Length (chunked streams) and for
	// text/event-stream, which is what streaming functions send. A negative
	// interval would also apply to fixed-length answers, where it costs a
	// timer, a goroutine and an early header-only write per invocation for
	// no gain: 5 more allocations per call when measured with
	// BenchmarkInvoke; its throughput effect was within noise on one run and
	// -40% on another.
	return c
}

func (c *proxyCall) reset() {
	c.target = nil
	c.params = ""
	c.name, c.ns = "", ""
	c.rp.Transport = nil
	c.status = 0
	c.upstream = 0
	c.err = nil
}

func (c *proxyCall) rewrite(pr *httputil.ProxyRequest) {
	u := pr.Out.URL // a copy made by ReverseProxy; safe to change
	u.Scheme = c.target.Scheme
	u.Host = c.target.Host
	u.Path = joinPath(c.target.Path, c.params)
	u.RawPath = ""
	// RawQuery is kept as the client sent it. An empty Host makes the
	// transport use the replica's URL host.
	pr.Out.Host = ""
	pr.SetXForwarded()
}

func joinPath(base, params string) string {
	base = strings.TrimSuffix(base, "/")
	if base == "" && params == "" {
		return "/"
	}
	return base + "/" + params
}

func (c *proxyCall) modifyResponse(res *http.Response) error {
	c.status = res.StatusCode
	if v := res.Header[durationHeader]; len(v) > 0 {
		if secs, err := strconv.ParseFloat(v[0], 64); err == nil && secs >= 0 {
			c.upstream = time.Duration(secs * float64(time.Second))
		}
	}
	return nil
}

// errorHandler answers when the replica could not be reached or did not
// answer: 504 when the invocation deadline passed, 502 otherwise.
func (c *proxyCall) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	c.err = err
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() == context.Canceled:
		// The client is gone; nobody reads this answer.
		c.status = statusClientClosedRequest
		return
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	c.status = status
	proxyError(w, status, "function %s.%s did not answer: %v", c.name, c.ns, err)
}

// bufferPool is a buffered channel rather than a sync.Pool because putting a
// []byte into a sync.Pool allocates.
type bufferPool struct {
	free chan []byte
	size int
}

func newBufferPool(n, size int) *bufferPool {
	return &bufferPool{free: make(chan []byte, n), size: size}
}

func (p *bufferPool) Get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, p.size)
	}
}

func (p *bufferPool) Put(b []byte) {
	if cap(b) < p.size {
		return
	}
	select {
	case p.free <- b[:p.size]:
	default:
	}
}
