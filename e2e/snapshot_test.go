package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/openfaas/faas-provider/types"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

// The whole snapshot path through the real binary, with snapshots in a real
// MinIO server: checkpoint on the engine's cue, eviction, restore of the
// next worker, inspection over the API and the counters in /metrics.
func TestSnapshotsThroughProviderWithMinIO(t *testing.T) {
	criu := snapshotRequirements(t)
	minio := snapshottest.StartMinIO(t)
	cfg := minio.Config("e2e-snapshots")
	bin, dataDir := buildBinary(t), t.TempDir()
	args := []string{"--criu", criu, "--snapshot-store", "minio", "--minio-endpoint", cfg.Endpoint,
		"--minio-access-key", cfg.AccessKey, "--minio-secret-key", cfg.SecretKey, "--minio-bucket", cfg.Bucket}
	p := startProvider(t, bin, dataDir, args...)

	bad := types.FunctionDeployment{Service: "bad", Image: "counter-node", Annotations: &map[string]string{"com.pronghorn.pool-capacity": "-3"}}
	if code, body := p.do("POST", "/system/functions", bad); code != 400 || !strings.Contains(body, "pool-capacity") {
		t.Errorf("invalid annotation = %d %q", code, body)
	}
	p.must(404, "GET", "/system/function/bad", nil)

	p.must(202, "POST", "/system/functions", types.FunctionDeployment{Service: "c", Image: "counter-node", Annotations: &map[string]string{
		"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "2", "com.pronghorn.evict-after": "3",
	}})
	inspect := func() orchestrator.State {
		var st orchestrator.State
		if err := json.Unmarshal([]byte(p.must(200, "GET", "/system/pronghorn/functions/c", nil)), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for want := 1; want <= 3; want++ {
		var r counterReply
		if err := json.Unmarshal([]byte(p.must(200, "GET", "/function/c", nil)), &r); err != nil || r.Count != want {
			t.Fatalf("call %d: %+v %v", want, r, err)
		}
		if want == 2 {
			waitFor(t, "the checkpoint", func() bool { st := inspect(); return st.Checkpoints+st.FailedCheckpoints > 0 })
		}
	}
	var r counterReply
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/function/c", nil)), &r); err != nil || r.Count != 3 {
		t.Fatalf("call after eviction: %+v %v, want the restored counter 3", r, err)
	}
	st := inspect()
	if st.Strategy != "fixed" || st.Checkpoints != 1 || st.Restores != 1 || st.ColdStarts != 1 || len(st.Pool) != 1 || st.Pool[0].SizeBytes == 0 {
		t.Errorf("state: %+v", st)
	}
	metrics := p.must(200, "GET", "/metrics", nil)
	for _, want := range []string{
		`pronghorn_restores_total{function_name="c.openfaas-fn"} 1`,
		`pronghorn_pool_snapshots{function_name="c.openfaas-fn"} 1`,
		`pronghorn_dump_seconds_count{function_name="c.openfaas-fn"} 1`,
		`pronghorn_restore_seconds_count{function_name="c.openfaas-fn"} 1`,
		`pronghorn_snapshot_transfer_bytes_total{direction="upload",function_name="c.openfaas-fn"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// After a restart the local copy of the images is gone: the function's
	// replica comes back restored from the snapshot fetched from MinIO.
	p.stop(syscall.SIGTERM)
	p = startProvider(t, bin, dataDir, args...)
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/function/c", nil)), &r); err != nil || r.Count != 3 {
		t.Fatalf("call after restart: %+v %v, want the restored counter 3", r, err)
	}
	if !strings.Contains(p.must(200, "GET", "/metrics", nil), `pronghorn_download_seconds_count{function_name="c.openfaas-fn"} 1`) {
		t.Error("the restore after restart did not download the snapshot")
	}

	// Removing the function removes its snapshots from the store.
	p.must(202, "DELETE", "/system/functions", types.DeleteFunctionRequest{FunctionName: "c"})
	store, err := snapshot.NewMinIOStore(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the snapshots to be deleted", func() bool {
		left, err := store.List(t.Context(), "")
		return err == nil && len(left) == 0
	})
}

// snapshotRequirements skips unless root, pypy3, node and CRIU are here, and
// returns the criu to run.
func snapshotRequirements(t *testing.T) string {
	t.Helper()
	requirements(t)
	criu := snapshottest.CRIU(t)
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("needs node for the sample function")
	}
	return criu
}

// A snapshot store that is down does not keep the provider from serving:
// functions run cold until it answers.
func TestProviderStartsWhileStoreIsDown(t *testing.T) {
	requirements(t)
	port, err := snapshottest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := startProvider(t, buildBinary(t), t.TempDir(), "--snapshot-store", "minio",
		"--minio-endpoint", fmt.Sprintf("127.0.0.1:%d", port), "--minio-access-key", "a", "--minio-secret-key", "secretsecret")
	p.must(202, "POST", "/system/functions", types.FunctionDeployment{Service: "c", Image: "counter-pypy", Annotations: &map[string]string{
		"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "1",
	}})
	var r counterReply
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/function/c", nil)), &r); err != nil || r.Count != 1 {
		t.Fatalf("invoke with the store down: %+v %v", r, err)
	}
	if !strings.Contains(p.logs.String(), "snapshot store not reachable yet") {
		t.Errorf("no warning about the store in the log:\n%s", p.logs)
	}
}
