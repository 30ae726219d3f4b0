package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// faultStore holds one object in memory and serves it through a
// fault-injecting transport, below the verifying reader, as a real store's
// network or disk would.
type faultStore struct {
	obj       []byte   // what the store holds
	m         Manifest // the manifest Get returns
	cur       Manifest // what a second look at the manifest finds
	getErr    error
	recheckEr error
	// transport wraps the object's bytes on their way to the reader.
	transport func(ctx context.Context, r io.Reader, s *faultStore) io.Reader
}

func newFaultStore(obj []byte) *faultStore {
	m := manifestOf("k", obj)
	return &faultStore{obj: obj, m: m, cur: m}
}

func manifestOf(key string, obj []byte) Manifest {
	sum := sha256.Sum256(obj)
	return Manifest{Key: key, PackedBytes: int64(len(obj)), SHA256: hex.EncodeToString(sum[:])}
}

func (s *faultStore) Get(ctx context.Context, key string) (io.ReadCloser, Manifest, error) {
	if s.getErr != nil {
		return nil, Manifest{}, s.getErr
	}
	var r io.Reader = bytes.NewReader(s.obj)
	if s.transport != nil {
		r = s.transport(ctx, r, s)
	}
	recheck := func() (Manifest, int64, error) {
		if s.recheckEr != nil {
			return Manifest{}, 0, s.recheckEr
		}
		return s.cur, int64(len(s.obj)), nil
	}
	return newVerifyingReader(io.NopCloser(r), s.m, recheck), s.m, nil
}

func (s *faultStore) Put(ctx context.Context, key string, r io.Reader, m Manifest) (Manifest, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return Manifest{}, err
	}
	s.obj = b
	out := manifestOf(key, b)
	out.Encrypted, out.KeyID = m.Encrypted, m.KeyID
	s.m, s.cur = out, out
	return out, nil
}

func (s *faultStore) Stat(context.Context, string) (Manifest, error) { return s.m, nil }
func (s *faultStore) Delete(context.Context, string) error           { return nil }
func (s *faultStore) List(context.Context, string) ([]Manifest, error) {
	return []Manifest{s.m}, nil
}

// cutAfter delivers n bytes, then fails with err (io.EOF: the transfer just
// ends); then is called first, e.g. to replace the stored object.
func cutAfter(n int64, err error, then func(*faultStore)) func(context.Context, io.Reader, *faultStore) io.Reader {
	return func(_ context.Context, r io.Reader, s *faultStore) io.Reader {
		return &cutReader{r: io.LimitReader(r, n), err: err, then: func() {
			if then != nil {
				then(s)
			}
		}}
	}
}

type cutReader struct {
	r    io.Reader
	err  error
	then func()
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		c.then()
		return n, c.err
	}
	return n, err
}

// stallAfter delivers n bytes, then blocks until ctx ends.
func stallAfter(n int64) func(context.Context, io.Reader, *faultStore) io.Reader {
	return func(ctx context.Context, r io.Reader, _ *faultStore) io.Reader {
		return io.MultiReader(io.LimitReader(r, n), readerFunc(func([]byte) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}))
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func randomData(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// packedImages packs a small image directory.
func packedImages(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"pages-1.img": append(bytes.Repeat([]byte("page "), 100000), randomData(t, 300000)...),
		"core-1.img":  randomData(t, 5000),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := Pack(context.Background(), dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// escapingArchive is a well-formed packed stream whose entry leaves the dir.
func escapingArchive(t testing.TB) []byte {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "../evil", Mode: 0o600, Size: 1})
	tw.Write([]byte("x"))
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestDownloadClassification(t *testing.T) {
	packed := packedImages(t)
	half := int64(len(packed) / 2)
	tests := []struct {
		name string
		// setup damages the store or its transport.
		setup       func(s *faultStore)
		dir         func(t *testing.T) string // default: a fresh temp dir
		timeout     time.Duration
		wantBad     bool     // ProvenBad
		wantIs      []error  // further kinds the error must wrap
		wantInError []string // the real cause, named
	}{
		{name: "intact"},
		{
			name:    "stored object has a flipped byte",
			setup:   func(s *faultStore) { s.obj = bytes.Clone(s.obj); s.obj[half] ^= 1 },
			wantBad: true, wantIs: []error{ErrCorrupt}, wantInError: []string{"sha256"},
		},
		{
			name:    "stored object shorter than its manifest",
			setup:   func(s *faultStore) { s.obj = s.obj[:half] },
			wantBad: true, wantIs: []error{ErrCorrupt}, wantInError: []string{"the stored object is"},
		},
		{
			name:    "stored object longer than its manifest",
			setup:   func(s *faultStore) { s.obj = append(bytes.Clone(s.obj), 0) },
			wantBad: true, wantIs: []error{ErrCorrupt}, wantInError: []string{"the stored object is"},
		},
		{
			name:    "object missing",
			setup:   func(s *faultStore) { s.getErr = errdefs.ErrNotFound },
			wantBad: true, wantIs: []error{errdefs.ErrNotFound},
		},
		{
			name:    "complete and matching, but not an archive",
			setup:   func(s *faultStore) { *s = *newFaultStore(randomData(t, 4096)) },
			wantBad: true, wantIs: []error{ErrCorrupt}, wantInError: []string{"all 4096 bytes arrived and match"},
		},
		{
			name:    "complete and matching archive with an entry escaping the dir",
			setup:   func(s *faultStore) { *s = *newFaultStore(escapingArchive(t)) },
			wantBad: true, wantIs: []error{ErrCorrupt}, wantInError: []string{"escapes the image dir"},
		},
		{
			name:   "transfer ends early without an error",
			setup:  func(s *faultStore) { s.transport = cutAfter(half, io.EOF, nil) },
			wantIs: []error{errdefs.ErrUnavailable}, wantInError: []string{"transfer ended early"},
		},
		{
			name:   "unexpected EOF mid-body",
			setup:  func(s *faultStore) { s.transport = cutAfter(half, io.ErrUnexpectedEOF, nil) },
			wantIs: []error{errdefs.ErrUnavailable, io.ErrUnexpectedEOF}, wantInError: []string{"unexpected EOF"},
		},
		{
			name:   "connection reset mid-body",
			setup:  func(s *faultStore) { s.transport = cutAfter(half, syscall.ECONNRESET, nil) },
			wantIs: []error{errdefs.ErrUnavailable, syscall.ECONNRESET}, wantInError: []string{"connection reset by peer"},
		},
		{
			name:    "store stalls until the deadline",
			setup:   func(s *faultStore) { s.transport = stallAfter(half) },
			timeout: 200 * time.Millisecond,
			wantIs:  []error{context.DeadlineExceeded}, wantInError: []string{"deadline exceeded"},
		},
		{
			name:   "store down",
			setup:  func(s *faultStore) { s.getErr = errdefs.ErrUnavailable },
			wantIs: []error{errdefs.ErrUnavailable},
		},
		{
			name: "cut short and the store is down when asked again",
			setup: func(s *faultStore) {
				s.transport = cutAfter(half, io.EOF, nil)
				s.recheckEr = errdefs.ErrUnavailable
			},
			wantIs: []error{errdefs.ErrUnavailable}, wantInError: []string{"could not be asked again"},
		},
		{
			name: "replaced while being read",
			setup: func(s *faultStore) {
				s.transport = cutAfter(half, io.EOF, func(s *faultStore) {
					s.obj = s.obj[:half]
					s.cur = manifestOf("k", s.obj)
				})
			},
			wantIs: []error{errdefs.ErrUnavailable}, wantInError: []string{"replaced while being read"},
		},
		{
			name:        "unpack dir missing (local error)",
			dir:         func(t *testing.T) string { return filepath.Join(t.TempDir(), "gone") },
			wantIs:      []error{os.ErrNotExist},
			wantInError: []string{"no such file or directory"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newFaultStore(packed)
			if tc.setup != nil {
				tc.setup(s)
			}
			dir := t.TempDir()
			if tc.dir != nil {
				dir = tc.dir(t)
			}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			_, err := Download(ctx, s, "k", dir)
			checkVerdict(t, err, tc.wantBad, tc.wantIs, tc.wantInError)
		})
	}
}

func checkVerdict(t *testing.T, err error, wantBad bool, wantIs []error, wantInError []string) {
	t.Helper()
	if wantIs == nil && !wantBad {
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		return
	}
	if err == nil {
		t.Fatal("no error")
	}
	t.Logf("error: %v", err)
	if ProvenBad(err) != wantBad {
		t.Errorf("ProvenBad = %v, want %v", ProvenBad(err), wantBad)
	}
	for _, k := range wantIs {
		if !errors.Is(err, k) {
			t.Errorf("error does not wrap %v", k)
		}
	}
	for _, s := range wantInError {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not mention %q", s)
		}
	}
}

// TestEncryptedDownloadClassification checks that decryption does not turn a
// transfer cut short into a "truncated ciphertext".
func TestEncryptedDownloadClassification(t *testing.T) {
	key := randomData(t, 32)
	packed := packedImages(t)
	tests := []struct {
		name        string
		readKey     []byte // default: key
		setup       func(s *faultStore)
		wantBad     bool
		wantIs      []error
		wantInError []string
	}{
		{name: "intact"},
		{
			name: "unexpected EOF mid-body",
			setup: func(s *faultStore) {
				s.transport = cutAfter(s.m.PackedBytes/2, io.ErrUnexpectedEOF, nil)
			},
			wantIs: []error{errdefs.ErrUnavailable}, wantInError: []string{"unexpected EOF"},
		},
		{
			name:   "transfer ends early without an error",
			setup:  func(s *faultStore) { s.transport = cutAfter(s.m.PackedBytes/2, io.EOF, nil) },
			wantIs: []error{errdefs.ErrUnavailable}, wantInError: []string{"transfer ended early"},
		},
		{
			name:    "stored ciphertext truncated",
			setup:   func(s *faultStore) { s.obj = s.obj[:len(s.obj)/2] },
			wantBad: true, wantIs: []error{ErrCorrupt},
		},
		{
			name: "ciphertext rewritten with a matching manifest",
			setup: func(s *faultStore) {
				obj := bytes.Clone(s.obj)
				obj[len(obj)/2] ^= 1
				m := manifestOf("k", obj)
				m.Encrypted, m.KeyID = s.m.Encrypted, s.m.KeyID
				s.obj, s.m, s.cur = obj, m, m
			},
			wantBad: true, wantIs: []error{ErrCorrupt}, wantInError: []string{"authentication failed"},
		},
		{
			name:    "another key",
			readKey: randomData(t, 32),
			wantIs:  []error{errdefs.ErrInvalid}, wantInError: []string{"encrypted with another key"},
		},
		{
			name:    "another key, manifest without key id",
			readKey: randomData(t, 32),
			setup:   func(s *faultStore) { s.m.KeyID, s.cur.KeyID = "", "" },
			wantBad: true, wantIs: []error{ErrCorrupt}, wantInError: []string{"authentication failed"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := &faultStore{}
			enc, err := NewEncryptedStore(inner, key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := enc.Put(context.Background(), "k", bytes.NewReader(packed), Manifest{}); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(inner)
			}
			rd := enc
			if tc.readKey != nil {
				if rd, err = NewEncryptedStore(inner, tc.readKey); err != nil {
					t.Fatal(err)
				}
			}
			_, err = Download(context.Background(), rd, "k", t.TempDir())
			checkVerdict(t, err, tc.wantBad, tc.wantIs, tc.wantInError)
		})
	}
}

func TestProvenBad(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrCorrupt, true},
		{errors.Join(errors.New("x"), ErrCorrupt), true},
		{errdefs.ErrNotFound, true},
		{errdefs.ErrUnavailable, false},
		{syscall.ENOSPC, false},
		{io.ErrUnexpectedEOF, false},
		{context.DeadlineExceeded, false},
		{os.ErrNotExist, false}, // a local file, not the snapshot
	} {
		if got := ProvenBad(tc.err); got != tc.want {
			t.Errorf("ProvenBad(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
