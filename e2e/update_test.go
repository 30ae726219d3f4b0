package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// versionedNode is a Node function that says which code and environment
// answered, and counts its calls so a restore is visible.
const versionedNode = `'use strict';
const http = require('http');
let count = 0;
const url = new URL(process.env.upstream_url || 'http://127.0.0.1:5000');
http.createServer((req, res) => {
  count++;
  const body = JSON.stringify({ code: %q, env: process.env.RELEASE || '', count });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
  req.resume();
}).listen(Number(url.port || 5000), url.hostname || '127.0.0.1');
`

type versionReply struct {
	Code  string `json:"code"`
	Env   string `json:"env"`
	Count int    `json:"count"`
}

// An update under load, after snapshots of the old version exist: no call
// fails, and once the first call is answered by the new version, every call
// that starts after it is answered by the new version, never by a restore
// of the old one.
func TestUpdateUnderLoadServesOnlyTheNewVersion(t *testing.T) {
	criu := snapshotRequirements(t)
	fnDir := t.TempDir()
	dir := filepath.Join(fnDir, "versioned")
	writeCode := func(code string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "function.json"), []byte(`{"fprocess": "node index.js", "runtime": "node"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "index.js"), fmt.Appendf(nil, versionedNode, code), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCode("v1")
	p := startProvider(t, buildBinary(t), t.TempDir(), "--criu", criu, "--functions-dir", fnDir)
	deploy := func(release string) types.FunctionDeployment {
		return types.FunctionDeployment{Service: "v", Image: "versioned", EnvVars: map[string]string{"RELEASE": release},
			Annotations: &map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "2", "com.pronghorn.evict-after": "4"}}
	}
	p.must(202, "POST", "/system/functions", deploy("1"))
	for range 4 {
		p.must(200, "GET", "/function/v", nil)
	}
	waitFor(t, "a v1 snapshot", func() bool {
		var st orchestrator.State
		return json.Unmarshal([]byte(p.must(200, "GET", "/system/pronghorn/functions/v", nil)), &st) == nil && len(st.Pool) > 0
	})

	type result struct {
		start, end time.Time
		status     int
		reply      versionReply
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := result{start: time.Now()}
				resp, err := client.Get(p.url + "/function/v")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.status = resp.StatusCode
					if r.status == 200 {
						r.err = json.Unmarshal(body, &r.reply)
					} else {
						r.err = fmt.Errorf("%s", body)
					}
				}
				if r.err == nil {
					r.err = err
				}
				r.end = time.Now()
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	writeCode("v2")
	put := time.Now()
	p.must(202, "PUT", "/system/functions", deploy("2"))
	var firstV2 time.Time
	waitFor(t, "a v2 answer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			// Code and environment both new: a worker started between the
			// code change on disk and the PUT runs the new code with the
			// old environment, which is a version of its own.
			if r.reply.Code == "v2" && r.reply.Env == "2" && (firstV2.IsZero() || r.end.Before(firstV2)) {
				firstV2 = r.end
			}
		}
		return !firstV2.IsZero()
	})
	time.Sleep(3 * time.Second) // load on the new version, through evictions and restores
	close(stop)
	wg.Wait()

	var failed, before, after, stale int
	for _, r := range results {
		switch {
		case r.err != nil || r.status != 200:
			failed++
			t.Errorf("call at %s: status %d: %v", r.start.Format(time.StampMilli), r.status, r.err)
		case r.start.After(firstV2):
			after++
			if r.reply.Code != "v2" || r.reply.Env != "2" {
				stale++
				t.Errorf("call started %s after the first v2 answer was answered by %+v", r.start.Sub(firstV2), r.reply)
			}
		default:
			before++
		}
	}
	t.Logf("%d calls (%d before the first v2 answer, %d after), %d failed, %d stale; PUT to first v2 answer %s",
		len(results), before, after, failed, stale, firstV2.Sub(put).Round(time.Millisecond))
	if after == 0 {
		t.Fatal("no call after the update")
	}
}
