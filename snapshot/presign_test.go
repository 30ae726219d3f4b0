package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// putURL uploads data to a presigned PUT URL as a pod would: a plain HTTP
// client, no credentials.
func putURL(t *testing.T, u string, data []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned PUT: %s: %s", resp.Status, b)
	}
}

func getStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func objectExists(t *testing.T, c *minio.Client, bucket, key string) bool {
	t.Helper()
	_, err := c.StatObject(context.Background(), bucket, "objects/"+key, minio.StatObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatal(err)
	}
	return err == nil
}

func TestPresignedUploadAndCommit(t *testing.T) {
	m := snapshottest.StartMinIO(t)
	ctx := context.Background()
	const bucket = "presign"
	s, err := snapshot.NewMinIOStore(ctx, m.Config(bucket))
	if err != nil {
		t.Fatal(err)
	}
	client := m.Client(t)
	data := append(bytes.Repeat([]byte("page"), 50000), randomBytes(t, 100000)...)
	const key = "openfaas-fn/counter/0123456789abcdef/r00003-w1"

	put, err := s.PresignPut(ctx, key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(put.String(), m.SecretKey) {
		t.Fatal("the presigned URL holds the secret key")
	}
	putURL(t, put.String(), data)

	// Uploaded, not committed: invisible.
	if _, err := s.Stat(ctx, key); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("stat before commit: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx, key); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("get before commit: %v, want ErrNotFound", err)
	}
	if l, err := s.List(ctx, "openfaas-fn/"); err != nil || len(l) != 0 {
		t.Errorf("list before commit: %v, %v", l, err)
	}

	got, err := s.Commit(ctx, key, snapshot.Manifest{PackedBytes: int64(len(data)), SHA256: sha256Hex(data), RequestNumber: 3, RawBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != key || got.CreatedAt.IsZero() || got.RequestNumber != 3 || got.SHA256 != sha256Hex(data) {
		t.Errorf("committed manifest %+v", got)
	}
	if b, err := readAll(t, s, key); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("get after commit: equal %v, %v", bytes.Equal(b, data), err)
	}
	if l, err := s.List(ctx, "openfaas-fn/"); err != nil || len(l) != 1 || l[0].Key != key {
		t.Errorf("list after commit: %v, %v", l, err)
	}

	// A provider killed between presigning and committing: at the next
	// start the upload is an orphan, the committed snapshot is not.
	orphanPut, err := s.PresignPut(ctx, "openfaas-fn/counter/0123456789abcdef/r00004-w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	putURL(t, orphanPut.String(), []byte("never committed"))
	if n, err := s.CleanIncomplete(ctx); err != nil || n != 1 {
		t.Errorf("clean: removed %d, %v; want the one uncommitted upload", n, err)
	}
	if objectExists(t, client, bucket, "openfaas-fn/counter/0123456789abcdef/r00004-w1") {
		t.Error("the uncommitted upload survived the clean-up")
	}
	if b, err := readAll(t, s, key); err != nil || !bytes.Equal(b, data) {
		t.Errorf("committed snapshot after clean-up: equal %v, %v", bytes.Equal(b, data), err)
	}

	t.Run("wrong size", func(t *testing.T) {
		const k = "fn/wrong-size"
		u, err := s.PresignPut(ctx, k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		putURL(t, u.String(), data[:1000])
		_, err = s.Commit(ctx, k, snapshot.Manifest{PackedBytes: 999, SHA256: sha256Hex(data[:999])})
		if !errors.Is(err, snapshot.ErrCorrupt) {
			t.Errorf("commit: %v, want ErrCorrupt", err)
		}
		if objectExists(t, client, bucket, k) {
			t.Error("object left after a failed commit")
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("stat: %v", err)
		}
	})
	t.Run("nothing uploaded", func(t *testing.T) {
		_, err := s.Commit(ctx, "fn/never", snapshot.Manifest{PackedBytes: 10, SHA256: sha256Hex([]byte("x"))})
		if !errors.Is(err, snapshot.ErrCorrupt) {
			t.Errorf("commit: %v, want ErrCorrupt", err)
		}
	})
	t.Run("no checksum", func(t *testing.T) {
		const k = "fn/no-sum"
		u, _ := s.PresignPut(ctx, k, time.Minute)
		putURL(t, u.String(), []byte("abc"))
		if _, err := s.Commit(ctx, k, snapshot.Manifest{PackedBytes: 3, SHA256: "nope"}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("commit: %v, want ErrInvalid", err)
		}
		if objectExists(t, client, bucket, k) {
			t.Error("object left after a failed commit")
		}
	})
	t.Run("checksum the worker got wrong", func(t *testing.T) {
		// Commit checks only the size; the first Get proves it bad.
		const k = "fn/lying"
		u, _ := s.PresignPut(ctx, k, time.Minute)
		putURL(t, u.String(), []byte("abc"))
		if _, err := s.Commit(ctx, k, snapshot.Manifest{PackedBytes: 3, SHA256: sha256Hex([]byte("abd"))}); err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(t, s, k); !errors.Is(err, snapshot.ErrCorrupt) {
			t.Errorf("get: %v, want ErrCorrupt", err)
		}
	})
	t.Run("missing object answers 404", func(t *testing.T) {
		u, err := s.PresignGet(ctx, "fn/missing", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if st := getStatus(t, u.String()); st != http.StatusNotFound {
			t.Errorf("GET a missing object: %d, want 404", st)
		}
		u, _ = s.PresignGet(ctx, key, time.Minute)
		if st := getStatus(t, u.String()); st != http.StatusOK {
			t.Errorf("GET the committed object: %d", st)
		}
	})
	t.Run("expired", func(t *testing.T) {
		u, err := s.PresignGet(ctx, key, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2100 * time.Millisecond)
		if st := getStatus(t, u.String()); st != http.StatusForbidden {
			t.Errorf("GET after expiry: %d, want 403", st)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		for _, tc := range []struct {
			key string
			ttl time.Duration
		}{{"../x", time.Minute}, {"", time.Minute}, {"fn/k", 0}, {"fn/k", 8 * 24 * time.Hour}} {
			if _, err := s.PresignGet(ctx, tc.key, tc.ttl); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("presign get %q %v: %v, want ErrInvalid", tc.key, tc.ttl, err)
			}
			if _, err := s.PresignPut(ctx, tc.key, tc.ttl); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("presign put %q %v: %v, want ErrInvalid", tc.key, tc.ttl, err)
			}
		}
		if _, err := s.Commit(ctx, "../x", snapshot.Manifest{}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("commit ../x: %v", err)
		}
	})
}

func TestPresignerWrappers(t *testing.T) {
	m := snapshottest.StartMinIO(t)
	ctx := context.Background()
	ms, err := snapshot.NewMinIOStore(ctx, m.Config("wrap"))
	if err != nil {
		t.Fatal(err)
	}
	lazy := snapshot.NewLazyStore(func(context.Context) (snapshot.Store, error) { return ms, nil })
	u, err := lazy.PresignPut(ctx, "fn/lazy", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	putURL(t, u.String(), []byte("lazy"))
	if _, err := lazy.Commit(ctx, "fn/lazy", snapshot.Manifest{PackedBytes: 4, SHA256: sha256Hex([]byte("lazy"))}); err != nil {
		t.Fatal(err)
	}
	if u, err = lazy.PresignGet(ctx, "fn/lazy", time.Minute); err != nil || getStatus(t, u.String()) != http.StatusOK {
		t.Errorf("lazy presign get: %v", err)
	}

	dir, err := snapshot.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lazyDir := snapshot.NewLazyStore(func(context.Context) (snapshot.Store, error) { return dir, nil })
	if _, err := lazyDir.PresignGet(ctx, "fn/k", time.Minute); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("lazy dir store presign: %v, want ErrInvalid", err)
	}
	down := snapshot.NewLazyStore(func(context.Context) (snapshot.Store, error) {
		return nil, fmt.Errorf("minio: %w", errdefs.ErrUnavailable)
	})
	if _, err := down.PresignGet(ctx, "fn/k", time.Minute); !errors.Is(err, errdefs.ErrUnavailable) || snapshot.ProvenBad(err) {
		t.Errorf("lazy store still down: %v, want ErrUnavailable", err)
	}

	// A pod cannot encrypt with the provider's key.
	enc, err := snapshot.NewEncryptedStore(ms, randomBytes(t, 32))
	if err != nil {
		t.Fatal(err)
	}
	var store snapshot.Store = enc
	if _, ok := store.(snapshot.Presigner); ok {
		t.Error("an encrypted store presigns")
	}
}

// httpClient10s is what a pod's agent would use.
var httpClient10s = &http.Client{Timeout: 10 * time.Second}

func TestDownloadURL(t *testing.T) {
	m := snapshottest.StartMinIO(t)
	ctx := context.Background()
	const bucket = "download"
	s, err := snapshot.NewMinIOStore(ctx, m.Config(bucket))
	if err != nil {
		t.Fatal(err)
	}
	client := m.Client(t)
	imgDir, files := makeImageDir(t)

	// UploadURL: what a pod's checkpoint does.
	const key = "fn/v/r00001-a"
	put, err := s.PresignPut(ctx, key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	up, err := snapshot.UploadURL(ctx, httpClient10s, put.String(), imgDir, tmp)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("upload left %v in its temp dir", left)
	}
	if up.PackedBytes <= 0 || up.RawBytes <= up.PackedBytes || len(up.SHA256) != 64 {
		t.Errorf("upload %+v", up)
	}
	reg, err := s.Commit(ctx, key, snapshot.Manifest{PackedBytes: up.PackedBytes, SHA256: up.SHA256, RawBytes: up.RawBytes})
	if err != nil {
		t.Fatal(err)
	}
	// The store's own verifying Get agrees with the checksum the pod sent.
	if _, err := snapshot.Download(ctx, s, key, t.TempDir()); err != nil {
		t.Fatalf("download through the store: %v", err)
	}
	presign := func(key string, ttl time.Duration) string {
		u, err := s.PresignGet(ctx, key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return u.String()
	}
	want := snapshot.Manifest{Key: key, PackedBytes: reg.PackedBytes, SHA256: reg.SHA256}

	t.Run("intact", func(t *testing.T) {
		out := t.TempDir()
		if err := snapshot.DownloadURL(ctx, httpClient10s, presign(key, time.Minute), want, out); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			got, err := os.ReadFile(filepath.Join(out, name))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: differs after the round trip (%v)", name, err)
			}
		}
	})

	packed, err := readAll(t, s, key)
	if err != nil {
		t.Fatal(err)
	}
	overwrite := func(t *testing.T, k string, b []byte) {
		t.Helper()
		if _, err := client.PutObject(ctx, bucket, "objects/"+k, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	flipped := bytes.Clone(packed)
	flipped[len(flipped)/2] ^= 0x40
	overwrite(t, "fn/flipped", flipped)
	overwrite(t, "fn/short", packed[:len(packed)-100])
	garbage := randomBytes(t, 5000)
	overwrite(t, "fn/garbage", garbage)
	refused, err := snapshottest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// A server that promises the whole object and hangs up halfway.
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(packed)))
		w.Write(packed[:len(packed)/2])
		panic(http.ErrAbortHandler)
	}))
	defer cut.Close()
	// Servers that send a body of unknown length (chunked), whole.
	chunked := func(b []byte) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(b[:10])
			w.(http.Flusher).Flush()
			w.Write(b[10:])
		}))
		t.Cleanup(srv.Close)
		return srv.URL + "/objects/fn?X-Amz-Signature=secret"
	}

	tests := []struct {
		name    string
		url     string
		want    snapshot.Manifest
		bad     bool // ProvenBad
		kind    error
		context string
	}{
		{name: "checksum mismatch", url: presign("fn/flipped", time.Minute), want: want, bad: true, kind: snapshot.ErrCorrupt},
		{name: "registered sha differs", url: presign(key, time.Minute),
			want: snapshot.Manifest{Key: key, PackedBytes: reg.PackedBytes, SHA256: sha256Hex([]byte("other"))}, bad: true, kind: snapshot.ErrCorrupt},
		{name: "stored object shorter", url: presign("fn/short", time.Minute), want: want, bad: true, kind: snapshot.ErrCorrupt, context: "bytes"},
		{name: "undecodable though intact", url: presign("fn/garbage", time.Minute),
			want: snapshot.Manifest{Key: "fn/garbage", PackedBytes: int64(len(garbage)), SHA256: sha256Hex(garbage)}, bad: true, kind: snapshot.ErrCorrupt},
		{name: "missing", url: presign("fn/gone", time.Minute), want: want, bad: true, kind: errdefs.ErrNotFound, context: "404"},
		{name: "connection refused", url: fmt.Sprintf("http://127.0.0.1:%d/b/objects/k?X-Amz-Signature=secret", refused), want: want, kind: errdefs.ErrUnavailable},
		{name: "transfer cut short", url: cut.URL + "/x?X-Amz-Signature=secret", want: want, kind: errdefs.ErrUnavailable},
		{name: "chunked and whole", url: chunked(packed), want: want},
		{name: "chunked, mismatching", url: chunked(flipped), want: want, bad: true, kind: snapshot.ErrCorrupt},
		{name: "chunked, shorter", url: chunked(packed[:len(packed)-100]), want: want, bad: true, kind: snapshot.ErrCorrupt},
		{name: "no checksum to verify", url: presign(key, time.Minute), want: snapshot.Manifest{Key: key, PackedBytes: reg.PackedBytes}, kind: errdefs.ErrInvalid},
		{name: "not a URL", url: "ftp://x/y", want: want, kind: errdefs.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := snapshot.DownloadURL(ctx, httpClient10s, tc.url, tc.want, t.TempDir())
			t.Logf("err: %v", err)
			if tc.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.kind) || snapshot.ProvenBad(err) != tc.bad {
				t.Errorf("err = %v; want %v, proven bad %v", err, tc.kind, tc.bad)
			}
			if !strings.Contains(fmt.Sprint(err), tc.context) {
				t.Errorf("err = %v, want it to mention %q", err, tc.context)
			}
			if strings.Contains(fmt.Sprint(err), "Signature") {
				t.Errorf("the error leaks the URL's signature: %v", err)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		u := presign(key, time.Second)
		time.Sleep(2100 * time.Millisecond)
		err := snapshot.DownloadURL(ctx, httpClient10s, u, want, t.TempDir())
		if err == nil || snapshot.ProvenBad(err) || !strings.Contains(err.Error(), "403") {
			t.Errorf("err = %v; want a 403 that proves nothing", err)
		}
	})
}

func TestUploadURL(t *testing.T) {
	ctx := context.Background()
	imgDir, _ := makeImageDir(t)
	var got []byte
	var gotLength, gotTE string
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotLength, gotTE = r.Header.Get("Content-Length"), strings.Join(r.TransferEncoding, ",")
		got, _ = io.ReadAll(r.Body)
		if status != http.StatusOK {
			w.WriteHeader(status)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>`)
		}
	}))
	defer srv.Close()
	tmp := t.TempDir()
	up, err := snapshot.UploadURL(ctx, httpClient10s, srv.URL+"/b/objects/k?X-Amz-Signature=secret", imgDir, tmp)
	if err != nil {
		t.Fatal(err)
	}
	if gotTE != "" || gotLength != fmt.Sprint(len(got)) || int64(len(got)) != up.PackedBytes || sha256Hex(got) != up.SHA256 {
		t.Errorf("upload %+v; server got %d bytes, Content-Length %q, Transfer-Encoding %q", up, len(got), gotLength, gotTE)
	}
	status = http.StatusForbidden
	_, err = snapshot.UploadURL(ctx, httpClient10s, srv.URL+"/b/objects/k?X-Amz-Signature=secret", imgDir, tmp)
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") || strings.Contains(err.Error(), "Signature") {
		t.Errorf("refused upload: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("uploads left %v in their temp dir", left)
	}
}
