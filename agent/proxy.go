package agent

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// durationHeader carries the function's own time back to the provider, in
// seconds, as of-watchdog reports it.
const durationHeader = "X-Duration-Seconds"

// newInvokeHandler proxies every request to the function and stamps how long
// the function took to answer (to its response headers: the part of the call
// that is the function's compute, not the client's read speed). served
// counts the calls the function answered below 500.
func newInvokeHandler(upstream *url.URL, served *atomic.Int64) (http.Handler, *http.Transport) {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.Host = pr.In.Host
			// The provider already set X-Forwarded-*; keep its values.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
		},
		Transport: timingTransport{next: transport, served: served},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "function unreachable: "+err.Error(), http.StatusBadGateway)
		},
	}, transport
}

type timingTransport struct {
	next http.RoundTripper
	// served counts calls as the provider's engine does (an answer below
	// 500), so that its count and the function's state agree: a provider
	// restarted while the worker runs learns from it where that state
	// stands.
	served *atomic.Int64
}

func (t timingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < http.StatusInternalServerError {
		t.served.Add(1)
	}
	resp.Header.Set(durationHeader, strconv.FormatFloat(time.Since(start).Seconds(), 'f', 6, 64))
	return resp, nil
}
