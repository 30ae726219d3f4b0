package snapshot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

// bigImageDir is an image directory of incompressible data, so the packed
// object is as large as the images.
func bigImageDir(t *testing.T, mb int) string {
	dir := t.TempDir()
	for i := range mb {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("pages-%d.img", i)), randomBytes(t, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// hookStore runs onRead once a Get's body has delivered n bytes.
type hookStore struct {
	snapshot.Store
	n      int64
	onRead func()
}

func (h *hookStore) Get(ctx context.Context, key string) (io.ReadCloser, snapshot.Manifest, error) {
	rc, m, err := h.Store.Get(ctx, key)
	if err != nil {
		return nil, m, err
	}
	return &hookReader{ReadCloser: rc, left: h.n, hook: h.onRead}, m, nil
}

type hookReader struct {
	io.ReadCloser
	left int64
	hook func()
	once sync.Once
}

func (r *hookReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if r.left -= int64(n); r.left <= 0 {
		r.once.Do(r.hook)
	}
	return n, err
}

// TestMinIOKilledMidDownload kills the MinIO server while a snapshot is
// being downloaded: the download fails, but not as a bad snapshot, and after
// the server is back the same snapshot downloads fine.
func TestMinIOKilledMidDownload(t *testing.T) {
	m := snapshottest.StartMinIO(t)
	ctx := context.Background()
	cfg := m.Config("outage")
	cfg.MaxRetries = 1
	store, err := snapshot.NewMinIOStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	man, err := snapshot.Upload(ctx, store, "fn/big", bigImageDir(t, 48), snapshot.Manifest{})
	if err != nil {
		t.Fatal(err)
	}
	killing := &hookStore{Store: store, n: 1 << 20, onRead: func() { snapshottest.StopMinIO(m) }}
	_, err = snapshot.Download(ctx, killing, "fn/big", t.TempDir())
	if err == nil {
		t.Fatal("download survived the server being killed")
	}
	t.Logf("error: %v", err)
	if snapshot.ProvenBad(err) {
		t.Fatalf("a killed server made the snapshot look bad: %v", err)
	}
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("error does not wrap ErrUnavailable")
	}

	m.Restart(t)
	got, err := snapshot.Download(ctx, store, "fn/big", t.TempDir())
	if err != nil {
		t.Fatalf("download after restart: %v", err)
	}
	if got.SHA256 != man.SHA256 {
		t.Errorf("sha256 %s, uploaded %s", got.SHA256, man.SHA256)
	}
}

// TestDownloadFullDisk unpacks a snapshot into a tmpfs too small for it:
// the error names the full disk and does not condemn the snapshot.
func TestDownloadFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	ctx := context.Background()
	store, err := snapshot.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Upload(ctx, store, "fn/a", bigImageDir(t, 3), snapshot.Manifest{}); err != nil {
		t.Fatal(err)
	}
	_, err = snapshot.Download(ctx, store, "fn/a", mnt)
	if err == nil {
		t.Fatal("3 MB unpacked into a 1 MB tmpfs")
	}
	t.Logf("error: %v", err)
	if snapshot.ProvenBad(err) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("want a full-disk error that does not condemn the snapshot, got %v", err)
	}
}

func TestDirStoreCleanIncomplete(t *testing.T) {
	ctx := context.Background()
	d := t.TempDir()
	s, err := snapshot.NewDirStore(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "fn/healthy", strings.NewReader("ok"), snapshot.Manifest{}); err != nil {
		t.Fatal(err)
	}
	// What a provider killed mid-Put leaves: a temp file, and an object
	// whose manifest was never renamed into place.
	for p, data := range map[string]string{"tmp/.put-123": "partial", "objects/fn/orphan": "orphan"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(d, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, p), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []int{2, 0} {
		n, err := s.CleanIncomplete(ctx)
		if err != nil || n != want {
			t.Errorf("clean %d: removed %d, %v; want %d", i, n, err, want)
		}
	}
	for _, p := range []string{"tmp/.put-123", "objects/fn/orphan"} {
		if _, err := os.Stat(filepath.Join(d, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if b, err := readAll(t, s, "fn/healthy"); err != nil || string(b) != "ok" {
		t.Errorf("healthy snapshot: %q, %v", b, err)
	}
	var _ snapshot.IncompleteCleaner = s
}

const putHelperEnv = "PRONGHORN_SNAPSHOT_STALLED_PUT"

type stalledPutConfig struct {
	MinIO snapshot.MinIOConfig
	Key   string
}

// stalledPut is the body of a re-executed test binary that Puts more than
// one multipart part and then stalls forever, until the test kills it like
// a provider dying mid-upload.
func stalledPut(raw string) {
	var cfg stalledPutConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		panic(err)
	}
	s, err := snapshot.NewMinIOStore(context.Background(), cfg.MinIO)
	if err != nil {
		panic(err)
	}
	stall := io.MultiReader(bytes.NewReader(make([]byte, 17<<20)), readerFunc(func([]byte) (int, error) { select {} }))
	s.Put(context.Background(), cfg.Key, stall, snapshot.Manifest{})
	os.Exit(1)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestMinIOCleanIncomplete(t *testing.T) {
	m := snapshottest.StartMinIO(t)
	ctx := context.Background()
	cfg := m.Config("clean")
	s, err := snapshot.NewMinIOStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "fn/healthy", strings.NewReader("ok"), snapshot.Manifest{}); err != nil {
		t.Fatal(err)
	}
	client := m.Client(t)

	// A provider killed mid-upload: a multipart upload with a part, never
	// completed nor aborted.
	b, _ := json.Marshal(stalledPutConfig{MinIO: cfg, Key: "fn/killed"})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), putHelperEnv+"="+string(b))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for !hasUploadedPart(ctx, client, "clean", "objects/fn/killed") {
		if time.Now().After(deadline) {
			t.Fatal("the stalled Put never uploaded a part")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	// A provider killed between writing an object and its manifest.
	if _, err := client.PutObject(ctx, "clean", "objects/fn/orphan", strings.NewReader("orphan"), 6, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	var cleaner snapshot.IncompleteCleaner = s
	for i, want := range []int{2, 0} {
		n, err := cleaner.CleanIncomplete(ctx)
		if err != nil || n != want {
			t.Errorf("clean %d: removed %d, %v; want %d", i, n, err, want)
		}
	}
	for up := range client.ListIncompleteUploads(ctx, "clean", "", true) {
		t.Errorf("upload left: %+v", up)
	}
	if _, err := client.StatObject(ctx, "clean", "objects/fn/orphan", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Errorf("orphan object left: %v", err)
	}
	if b, err := readAll(t, s, "fn/healthy"); err != nil || string(b) != "ok" {
		t.Errorf("healthy snapshot: %q, %v", b, err)
	}
}

func hasUploadedPart(ctx context.Context, c *minio.Client, bucket, object string) bool {
	core := minio.Core{Client: c}
	for up := range c.ListIncompleteUploads(ctx, bucket, object, true) {
		if up.Err != nil {
			continue
		}
		res, err := core.ListObjectParts(ctx, bucket, object, up.UploadID, 0, 10)
		if err == nil && len(res.ObjectParts) > 0 {
			return true
		}
	}
	return false
}
