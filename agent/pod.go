package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// PlanPath is where, under the provider URL, a pod's agent asks for its
// StartPlan.
const PlanPath = "/pronghorn/agent/start"

// StartPlan is the provider's answer to a pod asking how to start.
type StartPlan struct {
	Restore *RemoteImage `json:"restore,omitempty"` // nil: start cold
	// Version is the function version the provider planned this start
	// under ("" when the pod takes no part in snapshots), CheckpointAt the
	// lineage request number at which it means to checkpoint the pod (0:
	// never). The agent acts on neither: it reports them in its status
	// (PlanStatus), so that a provider restarted while the pod runs can
	// take the pod over where it stands.
	Version      string `json:"version,omitempty"`
	CheckpointAt int    `json:"checkpointAt,omitempty"`
}

// PlanStatus is the start plan a pod's agent followed, as its status
// reports it: without URLs, and with how the start went.
type PlanStatus struct {
	Version      string `json:"version,omitempty"`
	CheckpointAt int    `json:"checkpointAt,omitempty"`
	// StartLineage is the lineage request number the function's state
	// started at: the restored snapshot's, 0 for a cold start (planned,
	// or after a restore that failed). StartLineage + Status.Served is
	// where its state stands.
	StartLineage int `json:"startLineage"`
	// Snapshot is the key of the snapshot restored, "" if cold.
	Snapshot string `json:"snapshot,omitempty"`
}

// RemoteImage is a snapshot a pod fetches itself: the pod holds no store
// credentials, only a presigned URL for exactly this object.
type RemoteImage struct {
	URL    string `json:"url"`    // presigned GET
	SHA256 string `json:"sha256"` // of the packed object
	Size   int64  `json:"size"`   // packed bytes
	Key    string `json:"key"`
	// RequestNumber is the lineage request number the snapshot was taken
	// at, where the restored function's state starts.
	RequestNumber int `json:"requestNumber,omitempty"`
}

// planRequest names the pod; the provider trusts only the token, this is
// for its logs and for checking the two agree.
type planRequest struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
}

// planPolicy bounds asking for a plan. A pod may start before the
// provider's Service routes to it, so connection errors are retried for a
// while; the function waits meanwhile, but no longer than that.
type planPolicy struct {
	attempt time.Duration // one request
	window  time.Duration // retries start no later than this after the first
	backoff time.Duration // first pause between retries, doubling to 2s
}

const (
	planAttempt = 5 * time.Second
	planWindow  = 10 * time.Second
	planBackoff = 200 * time.Millisecond
	// maxPlanBytes bounds a plan: a presigned URL is a few KiB at most.
	maxPlanBytes = 64 << 10
	// remoteTimeout bounds a download of a remote image (and, separately,
	// a pack and upload of a dump), as the provider bounds its own.
	remoteTimeout = 2 * time.Minute
)

// newHTTPClient is the agent's client for the provider and the store. It
// has no overall timeout: each use bounds its own with a context.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: t}
}

// fetchPlan asks the provider how to start. Only a request that never
// reached the provider (a dial failure) is retried: planning a start moves
// the provider's state on, so a request it may have seen is not repeated.
func fetchPlan(ctx context.Context, client *http.Client, cfg Config, pol planPolicy) (StartPlan, error) {
	tok, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return StartPlan{}, fmt.Errorf("token: %w", err)
	}
	token := strings.TrimSpace(string(tok))
	if token == "" {
		return StartPlan{}, fmt.Errorf("token: %s is empty", cfg.TokenFile)
	}
	body, err := json.Marshal(planRequest{Pod: cfg.PodName, Namespace: cfg.PodNamespace})
	if err != nil {
		return StartPlan{}, err
	}
	target := strings.TrimSuffix(cfg.ProviderURL, "/") + PlanPath
	deadline := time.Now().Add(pol.window)
	pause := pol.backoff
	for attempt := 1; ; attempt++ {
		plan, err := postPlan(ctx, client, target, token, body, pol.attempt)
		if err == nil || !unreached(err) || ctx.Err() != nil || time.Now().Add(pause).After(deadline) {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("%w (attempt %d)", err, attempt)
			}
			return plan, err
		}
		select {
		case <-ctx.Done():
			return StartPlan{}, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

func postPlan(ctx context.Context, client *http.Client, target, token string, body []byte, timeout time.Duration) (StartPlan, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return StartPlan{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return StartPlan{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPlanBytes+1))
	if err != nil {
		return StartPlan{}, fmt.Errorf("read the plan: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(b))
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return StartPlan{}, fmt.Errorf("provider answered %s: %s", resp.Status, msg)
	}
	if len(b) > maxPlanBytes {
		return StartPlan{}, fmt.Errorf("plan larger than %d bytes", maxPlanBytes)
	}
	var plan StartPlan
	if err := json.Unmarshal(b, &plan); err != nil {
		return StartPlan{}, fmt.Errorf("decode the plan: %w", err)
	}
	return plan, nil
}

// unreached reports an error of a request that never reached its server.
func unreached(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return (errors.As(err, &op) && op.Op == "dial") || errors.As(err, &dns)
}

// fetchImage downloads img into dir (which must exist and be empty) and
// verifies it against its registered size and checksum.
func fetchImage(ctx context.Context, client *http.Client, img RemoteImage, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	return snapshot.DownloadURL(ctx, client, img.URL, snapshot.Manifest{Key: img.Key, PackedBytes: img.Size, SHA256: img.SHA256}, dir)
}

// restoreRemote fetches img into a directory of its own under WorkDir and
// restores the function from it; the images go once CRIU is done with them.
func (a *Agent) restoreRemote(ctx context.Context, img RemoteImage) (*process, error) {
	dir, err := os.MkdirTemp(a.cfg.WorkDir, "pronghorn-image-")
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", img.Key, err)
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	if err := fetchImage(ctx, a.client, img, dir); err != nil {
		return nil, err
	}
	a.fetchDur.Store(int64(time.Since(start)))
	a.log.Info("snapshot fetched", "function", a.cfg.Function, "snapshot", img.Key, "bytes", img.Size,
		"took", time.Since(start).Round(time.Millisecond))
	return a.restore(ctx, dir)
}

// planStart asks the provider for a plan and follows it: the restored
// function, or nil to start cold. A failure to get a plan is logged and
// means cold; a failed restore is also reported in the status.
func (a *Agent) planStart(ctx context.Context) *process {
	plan, err := fetchPlan(ctx, a.client, a.cfg, a.planPolicy)
	if err != nil {
		a.log.Warn("no start plan, starting cold", "function", a.cfg.Function, "err", err)
		return nil
	}
	st := &PlanStatus{Version: plan.Version, CheckpointAt: plan.CheckpointAt}
	defer a.plan.Store(st)
	if plan.Restore == nil {
		a.log.Info("start plan: cold", "function", a.cfg.Function)
		return nil
	}
	p := a.tryRestore(func() (*process, error) { return a.restoreRemote(ctx, *plan.Restore) })
	if p != nil {
		st.StartLineage, st.Snapshot = plan.Restore.RequestNumber, plan.Restore.Key
	}
	return p
}
