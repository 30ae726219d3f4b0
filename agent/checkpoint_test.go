package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	const bound = 100 * time.Millisecond
	tests := []struct {
		name     string
		inflight int           // calls entered before the checkpoint
		leave    time.Duration // when they leave (0: never)
		cancel   bool          // the checkpoint's ctx ends while it waits
		wantErr  string
	}{
		{name: "no calls"},
		{name: "calls leave in time", inflight: 2, leave: 20 * time.Millisecond},
		{name: "a call outlasts the bound", inflight: 1, wantErr: "1 call still in flight after 100ms"},
		{name: "calls outlast the bound", inflight: 3, wantErr: "3 calls still in flight after 100ms"},
		{name: "checkpoint cancelled", inflight: 1, cancel: true, wantErr: "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g gate
			ctx := context.Background()
			for range tc.inflight {
				if err := g.enter(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if tc.leave > 0 {
				time.AfterFunc(tc.leave, func() {
					for range tc.inflight {
						g.leave()
					}
				})
			}
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if tc.cancel {
				time.AfterFunc(bound/2, cancel)
			}
			open, err := g.close(cctx, bound)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				// Held: a call waits until the checkpoint opens the gate.
				entered := make(chan error, 1)
				go func() { entered <- g.enter(ctx) }()
				select {
				case <-entered:
					t.Fatal("a call entered a held gate")
				case <-time.After(20 * time.Millisecond):
				}
				open()
				if err := <-entered; err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			// Given up: the gate is open again for new calls.
			ectx, ecancel := context.WithTimeout(ctx, time.Second)
			defer ecancel()
			if err := g.enter(ectx); err != nil {
				t.Fatalf("a call after the checkpoint gave up: %v", err)
			}
		})
	}
}

// TestCheckpointWithCallsInFlight runs a checkpoint next to calls: it waits
// at most CheckpointDrain for them, calls arriving meanwhile are held no
// longer than that, and a streaming call is never cut. criu is missing on
// purpose: a checkpoint that gets past the calls fails there.
func TestCheckpointWithCallsInFlight(t *testing.T) {
	const drain = 400 * time.Millisecond
	tests := []struct {
		name       string
		inflight   string // path of a call in flight when the checkpoint starts; "" for none
		wantStatus int
		wantErr    string
	}{
		{name: "no calls", wantStatus: http.StatusInternalServerError, wantErr: "criu binary"},
		{name: "a short call finishes first", inflight: "/?stream=150ms", wantStatus: http.StatusInternalServerError, wantErr: "criu binary"},
		{name: "a streaming call outlasts the bound", inflight: "/?stream=2s", wantStatus: http.StatusServiceUnavailable,
			wantErr: "1 call still in flight after 400ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			invoke, control, _, _ := startAgentWith(t, nil, func(c *Config) {
				c.CheckpointDrain = Duration(drain)
				c.CRIUPath = "/nonexistent/criu"
			})
			waitStatus(t, control)

			streamDone := make(chan error, 1)
			if tc.inflight != "" {
				resp, err := invoke.Get("http://fn" + tc.inflight)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					if err == nil && len(b) == 0 {
						err = errors.New("empty stream")
					}
					streamDone <- err
				}()
			} else {
				streamDone <- nil
			}

			start := time.Now()
			type result struct {
				status int
				body   string
				took   time.Duration
			}
			cp := make(chan result, 1)
			go func() {
				resp, err := control.Post("http://agent/checkpoint", "application/json",
					strings.NewReader(`{"dir": "`+filepath.Join(t.TempDir())+`"}`))
				if err != nil {
					cp <- result{body: err.Error()}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				cp <- result{resp.StatusCode, string(b), time.Since(start)}
			}()

			// A call arriving while the checkpoint waits is served once it
			// is done waiting, never later than the bound.
			time.Sleep(50 * time.Millisecond)
			t0 := time.Now()
			resp, err := invoke.Get("http://fn/quick")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if waited := time.Since(t0); resp.StatusCode != http.StatusOK || waited > drain+500*time.Millisecond {
				t.Errorf("call during the checkpoint: status %d after %v", resp.StatusCode, waited)
			}

			r := <-cp
			t.Logf("checkpoint after %v: %d %s", r.took, r.status, strings.TrimSpace(r.body))
			if r.status != tc.wantStatus || !strings.Contains(r.body, tc.wantErr) {
				t.Errorf("checkpoint: %d %q, want %d mentioning %q", r.status, r.body, tc.wantStatus, tc.wantErr)
			}
			if r.took > drain+time.Second {
				t.Errorf("checkpoint took %v, bound is %v", r.took, drain)
			}
			if err := <-streamDone; err != nil {
				t.Errorf("call in flight: %v", err)
			}
		})
	}
}

func TestStatusRestoreCorrupt(t *testing.T) {
	images := func(files ...string) func(t *testing.T) string {
		return func(t *testing.T) string {
			dir := t.TempDir()
			for _, f := range files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			return dir
		}
	}
	tests := []struct {
		name        string
		criu        string
		dir         func(t *testing.T) string
		wantCorrupt bool
		wantErr     string
	}{
		{name: "images missing", criu: "/bin/true", dir: images(), wantCorrupt: true, wantErr: "inventory.img is missing"},
		{name: "criu not installed", criu: "/nonexistent/criu", dir: images("inventory.img", "pstree.img"), wantErr: "criu binary"},
		{name: "criu fails", criu: "/bin/false", dir: images("inventory.img", "pstree.img"), wantErr: "criu restore from"},
		{name: "image dir missing", criu: "/bin/true", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "gone") },
			wantErr: "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			_, control, _, _ := startAgentWith(t, nil, func(c *Config) {
				c.CRIUPath = tc.criu
				c.RestoreDir = dir
			})
			st := waitStatus(t, control)
			t.Logf("status: %+v", st)
			if st.Restored || !strings.Contains(st.RestoreError, tc.wantErr) || st.RestoreCorrupt != tc.wantCorrupt {
				t.Errorf("status %+v; want a cold start with restoreCorrupt %v and an error mentioning %q", st, tc.wantCorrupt, tc.wantErr)
			}
		})
	}
}
