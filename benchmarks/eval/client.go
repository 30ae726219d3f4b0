package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// client speaks the faas-provider API plus Pronghorn's inspection endpoint.
type client struct {
	base           string
	user, password string
	hc             *http.Client
}

func newClient(base, user, password string, timeout time.Duration) *client {
	return &client{
		base: strings.TrimRight(base, "/"), user: user, password: password,
		// One keep-alive connection is reused for the sequential calls, so
		// client latency carries no TCP handshake.
		hc: &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}},
	}
}

// EngineState mirrors GET /system/pronghorn/functions/{name}.
type EngineState struct {
	Strategy          string      `json:"strategy"`
	Pool              []PoolEntry `json:"pool"`
	Weights           []float64   `json:"weights"`
	ColdStarts        uint64      `json:"coldStarts"`
	Restores          uint64      `json:"restores"`
	Checkpoints       uint64      `json:"checkpoints"`
	FailedRestores    uint64      `json:"failedRestores"`
	FailedCheckpoints uint64      `json:"failedCheckpoints"`
}

// PoolEntry is one snapshot of a function's pool.
type PoolEntry struct {
	Key           string  `json:"key"`
	RequestNumber int     `json:"requestNumber"`
	SizeBytes     int64   `json:"sizeBytes"`
	Score         float64 `json:"score"`
}

// PoolBytes is the stored size of the whole pool.
func (s EngineState) PoolBytes() int64 {
	var n int64
	for _, p := range s.Pool {
		n += p.SizeBytes
	}
	return n
}

func (c *client) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.password != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	}
	if out == nil {
		return nil
	}
	if p, ok := out.(*[]byte); ok {
		*p = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, path, err)
	}
	return nil
}

type deployment struct {
	Service     string            `json:"service"`
	Image       string            `json:"image"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func (c *client) deploy(ctx context.Context, name, image string, annotations map[string]string) error {
	return c.do(ctx, http.MethodPost, "/system/functions", deployment{Service: name, Image: image, Annotations: annotations}, nil)
}

func (c *client) remove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/system/functions", map[string]string{"functionName": name}, nil)
}

// waitReady polls the function's status until a replica is available, so
// the first measured request times the function, not the deploy.
func (c *client) waitReady(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		var st struct {
			AvailableReplicas uint64 `json:"availableReplicas"`
		}
		last = c.do(ctx, http.MethodGet, "/system/function/"+url.PathEscape(name), nil, &st)
		if last == nil && st.AvailableReplicas > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("function %s not ready after %s: %w", name, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *client) inspect(ctx context.Context, name string) (EngineState, error) {
	var st EngineState
	err := c.do(ctx, http.MethodGet, "/system/pronghorn/functions/"+url.PathEscape(name), nil, &st)
	return st, err
}

func (c *client) metrics(ctx context.Context, function string) (Scrape, error) {
	var data []byte
	if err := c.do(ctx, http.MethodGet, "/metrics", nil, &data); err != nil {
		return nil, err
	}
	return ParseMetrics(bytes.NewReader(data), function)
}

// checkpointWait bounds the wait for a run's checkpoints in progress: a
// checkpoint the provider has not finished in it (its own limit is two
// minutes) is left out of the run's counts.
const checkpointWait = 3 * time.Minute

// checkpointsDone scrapes the function's metrics until no checkpoint is in
// progress, or until limit has passed, and returns the last scrape.
func (c *client) checkpointsDone(ctx context.Context, function string, limit time.Duration) (Scrape, error) {
	deadline := time.Now().Add(limit)
	for {
		sc, err := c.metrics(ctx, function)
		if err != nil || sc[mInProgress] == 0 || time.Now().After(deadline) {
			return sc, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// invocation is one measured call.
type invocation struct {
	clientUS, serverUS int64
	// lineage is the function's count of requests its runtime state has
	// served (the benchmarks' "lineage", the counter samples' "count"), -1
	// when it reports none; worker is its worker token ("" when none).
	lineage int
	worker  string
}

// invoke calls the function once and returns the client-side latency
// (request written to response fully read) and what the handler reported.
func (c *client) invoke(ctx context.Context, name string, seed int64, mutability float64) (invocation, error) {
	q := url.Values{}
	q.Set("seed", strconv.FormatInt(seed, 10))
	q.Set("mutability", strconv.FormatFloat(mutability, 'g', -1, 64))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/function/"+url.PathEscape(name)+"?"+q.Encode(), nil)
	if err != nil {
		return invocation{}, fmt.Errorf("invoke %s: %w", name, err)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return invocation{}, fmt.Errorf("invoke %s: %w", name, err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if err != nil {
		return invocation{}, fmt.Errorf("invoke %s: read: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return invocation{}, fmt.Errorf("invoke %s: %s: %.200s", name, resp.Status, strings.TrimSpace(string(data)))
	}
	var reply struct {
		ServerUS *int64 `json:"server_us"`
		Lineage  *int64 `json:"lineage"`
		Count    *int64 `json:"count"`
		Worker   string `json:"worker"`
	}
	if err := json.Unmarshal(data, &reply); err != nil || reply.ServerUS == nil {
		return invocation{}, fmt.Errorf("invoke %s: reply lacks server_us: %.200s", name, data)
	}
	inv := invocation{clientUS: elapsed.Microseconds(), serverUS: *reply.ServerUS, lineage: -1, worker: reply.Worker}
	switch {
	case reply.Lineage != nil:
		inv.lineage = int(*reply.Lineage)
	case reply.Count != nil:
		inv.lineage = int(*reply.Count)
	}
	return inv, nil
}

// scale sets the function's replica count (0 retires its worker; the next
// invocation scales it from zero).
func (c *client) scale(ctx context.Context, name string, replicas int) error {
	return c.do(ctx, http.MethodPost, "/system/scale-function/"+url.PathEscape(name),
		map[string]any{"serviceName": name, "replicas": replicas}, nil)
}

// availableReplicas reads the function's ready replica count.
func (c *client) availableReplicas(ctx context.Context, name string) (uint64, error) {
	var st struct {
		AvailableReplicas uint64 `json:"availableReplicas"`
	}
	err := c.do(ctx, http.MethodGet, "/system/function/"+url.PathEscape(name), nil, &st)
	return st.AvailableReplicas, err
}
