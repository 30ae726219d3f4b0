package snapshot_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// makeImageDir writes a fake CRIU image dir: compressible "pages" plus
// random bytes and a subdirectory.
func makeImageDir(t testing.TB) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"pages-1.img":     bytes.Repeat([]byte("pronghorn page "), 300000),
		"core-1000.img":   randomBytes(t, 70000),
		"empty.img":       nil,
		"sub/inner.img":   []byte("nested"),
		"inventory.img":   randomBytes(t, 13),
		"pagemap-1.img":   randomBytes(t, 1<<20),
		"stats-dump.img":  []byte{1, 2, 3},
		"pronghorn-x.txt": []byte("x"),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, files
}

func TestPackUnpackRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir, files := makeImageDir(t)
	var buf bytes.Buffer
	raw, err := snapshot.Pack(ctx, dir, &buf)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, d := range files {
		want += int64(len(d))
	}
	if raw != want {
		t.Errorf("raw = %d, want %d", raw, want)
	}
	if int64(buf.Len()) >= raw {
		t.Errorf("packed %d bytes is not smaller than raw %d", buf.Len(), raw)
	}
	out := t.TempDir()
	n, err := snapshot.Unpack(ctx, &buf, out)
	if err != nil {
		t.Fatal(err)
	}
	if n != raw {
		t.Errorf("unpacked %d, want %d", n, raw)
	}
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s differs after round trip", name)
		}
	}
}

// storeCase builds one store under test.
type storeCase struct {
	name string
	make func(t *testing.T) snapshot.Store
	// corrupt flips a byte of the stored object for key (nil: not supported).
	corrupt  func(t *testing.T, key string)
	truncate func(t *testing.T, key string)
}

func storeCases(t *testing.T) []storeCase {
	key := randomBytes(t, 32)
	var dirs []string // per case, set by make
	dirStore := func(t *testing.T) snapshot.Store {
		d := t.TempDir()
		dirs = append(dirs, d)
		s, err := snapshot.NewDirStore(d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	objPath := func(key string) string { return filepath.Join(dirs[len(dirs)-1], "objects", key) }
	flip := func(t *testing.T, k string) {
		p := objPath(k)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	trunc := func(t *testing.T, k string) {
		p := objPath(k)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, fi.Size()-100); err != nil {
			t.Fatal(err)
		}
	}
	return []storeCase{
		{name: "dir", make: dirStore, corrupt: flip, truncate: trunc},
		{name: "encrypted-dir", make: func(t *testing.T) snapshot.Store {
			s, err := snapshot.NewEncryptedStore(dirStore(t), key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, corrupt: flip, truncate: trunc},
		{name: "minio", make: func(t *testing.T) snapshot.Store {
			m := snapshottest.StartMinIO(t)
			s, err := snapshot.NewMinIOStore(context.Background(), m.Config("snapshots"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
}

func readAll(t *testing.T, s snapshot.Store, key string) ([]byte, error) {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// failingReader returns data then fails, like a pack that hit a full disk.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestStores(t *testing.T) {
	for _, tc := range storeCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := tc.make(t)
			data := append(bytes.Repeat([]byte("abc"), 100000), randomBytes(t, 200000)...)
			m, err := s.Put(ctx, "fn/a-1", bytes.NewReader(data), snapshot.Manifest{Function: "fn", Runtime: "pypy", RequestNumber: 7, RawBytes: 42, DumpTime: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if m.Key != "fn/a-1" || m.SHA256 == "" || m.PackedBytes == 0 || m.CreatedAt.IsZero() || m.RequestNumber != 7 {
				t.Errorf("put manifest incomplete: %+v", m)
			}
			got, err := readAll(t, s, "fn/a-1")
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("get: err=%v, equal=%v", err, bytes.Equal(got, data))
			}
			st, err := s.Stat(ctx, "fn/a-1")
			if err != nil || st.SHA256 != m.SHA256 || st.DumpTime != m.DumpTime || st.Function != "fn" {
				t.Fatalf("stat = %+v, %v; want %+v", st, err, m)
			}
			if _, err := s.Put(ctx, "fn/b-2", strings.NewReader("small"), snapshot.Manifest{}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Put(ctx, "other/c", strings.NewReader(""), snapshot.Manifest{}); err != nil {
				t.Fatal(err)
			}
			for _, lc := range []struct {
				prefix string
				want   []string
			}{
				{"fn/", []string{"fn/a-1", "fn/b-2"}},
				{"", []string{"fn/a-1", "fn/b-2", "other/c"}},
				{"none", nil},
			} {
				l, err := s.List(ctx, lc.prefix)
				if err != nil {
					t.Fatal(err)
				}
				var keys []string
				for _, m := range l {
					keys = append(keys, m.Key)
				}
				if strings.Join(keys, ",") != strings.Join(lc.want, ",") {
					t.Errorf("list %q = %v, want %v", lc.prefix, keys, lc.want)
				}
			}

			// Missing objects.
			for _, op := range []func() error{
				func() error { _, _, err := s.Get(ctx, "nope"); return err },
				func() error { _, err := s.Stat(ctx, "nope"); return err },
				func() error { return s.Delete(ctx, "nope") },
			} {
				if err := op(); !errors.Is(err, errdefs.ErrNotFound) {
					t.Errorf("missing key: err = %v, want ErrNotFound", err)
				}
			}
			// Invalid keys.
			if _, err := s.Put(ctx, "../x", strings.NewReader("x"), snapshot.Manifest{}); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("put ../x: err = %v, want ErrInvalid", err)
			}

			// A reader failing mid-Put (disk full, dump died) leaves nothing.
			boom := errors.New("disk full")
			_, err = s.Put(ctx, "fn/partial", &failingReader{r: bytes.NewReader(data), err: boom}, snapshot.Manifest{})
			if err == nil {
				t.Fatal("put with failing reader succeeded")
			}
			if _, err := s.Stat(ctx, "fn/partial"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("after failed put: stat err = %v, want ErrNotFound", err)
			}
			if l, _ := s.List(ctx, "fn/partial"); len(l) != 0 {
				t.Errorf("after failed put: list = %v", l)
			}

			if tc.corrupt != nil {
				tc.corrupt(t, "fn/a-1")
				if _, err := readAll(t, s, "fn/a-1"); !errors.Is(err, snapshot.ErrCorrupt) {
					t.Errorf("corrupt object: err = %v, want ErrCorrupt", err)
				}
			}
			if tc.truncate != nil {
				if _, err := s.Put(ctx, "fn/t", bytes.NewReader(data), snapshot.Manifest{}); err != nil {
					t.Fatal(err)
				}
				tc.truncate(t, "fn/t")
				if _, err := readAll(t, s, "fn/t"); !errors.Is(err, snapshot.ErrCorrupt) {
					t.Errorf("truncated object: err = %v, want ErrCorrupt", err)
				}
			}

			if err := s.Delete(ctx, "fn/b-2"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Stat(ctx, "fn/b-2"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("after delete: err = %v", err)
			}
		})
	}
}

func TestDirStoreLeavesNoTempFiles(t *testing.T) {
	d := t.TempDir()
	s, err := snapshot.NewDirStore(d)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(context.Background(), "k", &failingReader{r: strings.NewReader("abc"), err: errors.New("boom")}, snapshot.Manifest{})
	if err == nil {
		t.Fatal("want error")
	}
	for _, sub := range []string{"tmp", "objects", "manifests"} {
		entries, _ := os.ReadDir(filepath.Join(d, sub))
		if len(entries) != 0 {
			t.Errorf("%s not empty after failed put: %v", sub, entries)
		}
	}
}

func TestEncryptedStore(t *testing.T) {
	ctx := context.Background()
	key := randomBytes(t, 32)
	dir := t.TempDir()
	inner, err := snapshot.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := snapshot.NewEncryptedStore(inner, key)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, 64 << 10, 64<<10 + 1, 3*64<<10 - 5, 3 * 64 << 10}
	for _, n := range sizes {
		data := randomBytes(t, n)
		m, err := enc.Put(ctx, "k", bytes.NewReader(data), snapshot.Manifest{})
		if err != nil {
			t.Fatal(err)
		}
		if !m.Encrypted {
			t.Error("manifest not marked encrypted")
		}
		// The inner object must not contain the plaintext.
		raw, err := readAll(t, inner, "k")
		if err != nil {
			t.Fatal(err)
		}
		if n > 16 && bytes.Contains(raw, data[:16]) {
			t.Errorf("size %d: plaintext visible in the stored object", n)
		}
		got, err := readAll(t, enc, "k")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: round trip err=%v equal=%v", n, err, bytes.Equal(got, data))
		}
	}

	// Another key: the snapshot is intact, only not ours to read.
	other, _ := snapshot.NewEncryptedStore(inner, randomBytes(t, 32))
	if _, err := readAll(t, other, "k"); !errors.Is(err, errdefs.ErrInvalid) || snapshot.ProvenBad(err) {
		t.Errorf("wrong key: err = %v, want ErrInvalid", err)
	}

	// Tampering and truncation that keep the outer checksum valid (an
	// attacker with store access can rewrite the manifest too): re-Put
	// modified ciphertext through the plain inner store, manifest intact.
	data := randomBytes(t, 200000)
	if _, err := enc.Put(ctx, "k", bytes.NewReader(data), snapshot.Manifest{}); err != nil {
		t.Fatal(err)
	}
	ct, err := readAll(t, inner, "k")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"flip", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 1; return b }},
		{"drop-last-chunk", func(b []byte) []byte { return b[:17+2*(64<<10+16)] }},
		{"cut-mid-chunk", func(b []byte) []byte { return b[:len(b)-10] }},
		{"header-only", func(b []byte) []byte { return b[:17] }},
		{"empty", func(b []byte) []byte { return nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := inner.Put(ctx, "t", bytes.NewReader(tc.mod(ct)), snapshot.Manifest{Encrypted: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := readAll(t, enc, "t"); !errors.Is(err, snapshot.ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
		})
	}

	if _, err := snapshot.NewEncryptedStore(inner, []byte("short")); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("short key: err = %v", err)
	}
}

func TestLoadKeyFile(t *testing.T) {
	key := randomBytes(t, 32)
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content []byte
		ok      bool
	}{
		{"raw", key, true},
		{"hex", []byte(strings.ToUpper(hexString(key)) + "\n"), true},
		{"base64", []byte(b64(key) + "\n"), true},
		{"short", []byte("abc"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			os.WriteFile(p, tc.content, 0o600)
			got, err := snapshot.LoadKeyFile(p)
			if tc.ok != (err == nil) || (tc.ok && !bytes.Equal(got, key)) {
				t.Errorf("got %x, %v", got, err)
			}
		})
	}
}

func TestMinIOUnavailable(t *testing.T) {
	port, err := snapshottest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = snapshot.NewMinIOStore(ctx, snapshot.MinIOConfig{Endpoint: "127.0.0.1:" + itoa(port), Bucket: "bucket", AccessKey: "a", SecretKey: "secretsecret", MaxRetries: 1})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
}

func TestMinIOStopsMidway(t *testing.T) {
	// A store that goes away after it was opened reports ErrUnavailable too.
	m := snapshottest.StartMinIO(t)
	ctx := context.Background()
	cfg := m.Config("outage")
	cfg.MaxRetries = 1
	s, err := snapshot.NewMinIOStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	snapshottest.StopMinIO(m)
	if _, err := s.Put(ctx, "k", strings.NewReader("x"), snapshot.Manifest{}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("put: err = %v, want ErrUnavailable", err)
	}
	if _, _, err := s.Get(ctx, "k"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("get: err = %v, want ErrUnavailable", err)
	}
}
