package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Presigner is a store that can let a worker move one object without
// credentials: a Kubernetes pod never holds the store's keys, only a
// short-lived URL for exactly the object it restores or writes.
//
// An EncryptedStore is deliberately not a Presigner: a pod would have to
// encrypt and decrypt with the provider's key, so with an encrypted store
// Kubernetes pods take no part in snapshots and always start cold.
type Presigner interface {
	// PresignGet returns a URL that reads the object of key for ttl. The
	// URL answers 404 when the object does not exist.
	PresignGet(ctx context.Context, key string, ttl time.Duration) (*url.URL, error)
	// PresignPut returns a URL that writes the object of key, in one PUT
	// with a Content-Length, for ttl.
	PresignPut(ctx context.Context, key string, ttl time.Duration) (*url.URL, error)
	// Commit records the manifest of an object uploaded through PresignPut:
	// it checks that the object exists with m.PackedBytes bytes (else an
	// error wrapping ErrCorrupt, and the object is removed), fills Key and
	// CreatedAt, writes the manifest and returns it. Until Commit, Get,
	// Stat and List do not see the key.
	Commit(ctx context.Context, key string, m Manifest) (Manifest, error)
}

var (
	_ Presigner = (*MinIOStore)(nil)
	_ Presigner = (*LazyStore)(nil)
)

// maxPresignTTL is the longest validity S3 signatures (V4) allow.
const maxPresignTTL = 7 * 24 * time.Hour

func checkPresign(key string, ttl time.Duration) error {
	if err := validateKey(key); err != nil {
		return err
	}
	if ttl < time.Second || ttl > maxPresignTTL {
		return fmt.Errorf("presign %s: validity %s: %w: must be 1s..%s", key, ttl, errdefs.ErrInvalid, maxPresignTTL)
	}
	return nil
}

// PresignGet implements Presigner.
func (s *MinIOStore) PresignGet(ctx context.Context, key string, ttl time.Duration) (*url.URL, error) {
	if err := checkPresign(key, ttl); err != nil {
		return nil, err
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, objectName(key), ttl, nil)
	if err != nil {
		return nil, s.wrap("presign get "+key, err)
	}
	return u, nil
}

// PresignPut implements Presigner.
func (s *MinIOStore) PresignPut(ctx context.Context, key string, ttl time.Duration) (*url.URL, error) {
	if err := checkPresign(key, ttl); err != nil {
		return nil, err
	}
	u, err := s.client.PresignedPutObject(ctx, s.bucket, objectName(key), ttl)
	if err != nil {
		return nil, s.wrap("presign put "+key, err)
	}
	return u, nil
}

// Commit implements Presigner. The worker reports the checksum; it is not
// recomputed here (that would read the whole object back), but every Get
// verifies it, so an upload that does not match what the worker reported
// is found out, and proven bad, on its first restore.
//
// A failed Commit leaves nothing under key, like a failed Put: whatever
// the worker uploaded would otherwise stay an orphan until the next
// CleanIncomplete.
func (s *MinIOStore) Commit(ctx context.Context, key string, m Manifest) (Manifest, error) {
	if err := validateKey(key); err != nil {
		return Manifest{}, err
	}
	fail := func(err error) (Manifest, error) {
		s.discard(ctx, key)
		return Manifest{}, err
	}
	if m.PackedBytes <= 0 || !validSHA256(m.SHA256) {
		return fail(fmt.Errorf("minio store: commit %s: %w: the manifest needs the packed size and a sha256 (got %d bytes, %q)",
			key, errdefs.ErrInvalid, m.PackedBytes, m.SHA256))
	}
	info, err := s.client.StatObject(ctx, s.bucket, objectName(key), minio.StatObjectOptions{})
	switch {
	case minio.ToErrorResponse(err).Code == "NoSuchKey":
		return fail(fmt.Errorf("minio store: commit %s: %w: nothing was uploaded", key, ErrCorrupt))
	case err != nil:
		return fail(s.wrap("commit "+key, err))
	case info.Size != m.PackedBytes:
		return fail(fmt.Errorf("minio store: commit %s: %w: the uploaded object is %d bytes, the worker packed %d",
			key, ErrCorrupt, info.Size, m.PackedBytes))
	}
	m.Key = key
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	if err := s.putManifest(ctx, key, m); err != nil {
		return fail(err)
	}
	return m, nil
}

func (s *MinIOStore) putManifest(ctx context.Context, key string, m Manifest) error {
	mb, err := m.marshal()
	if err != nil {
		return err
	}
	_, err = s.client.PutObject(ctx, s.bucket, manifestName(key), bytes.NewReader(mb), int64(len(mb)),
		minio.PutObjectOptions{ContentType: "application/json"})
	return s.wrap("put manifest "+key, err)
}

// discard removes what a failed Commit leaves, with a fresh context in case
// ctx is what failed. Errors are ignored: CleanIncomplete removes an object
// without a manifest at the next start anyway.
func (s *MinIOStore) discard(ctx context.Context, key string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	s.client.RemoveObject(cctx, s.bucket, manifestName(key), minio.RemoveObjectOptions{})
	s.client.RemoveObject(cctx, s.bucket, objectName(key), minio.RemoveObjectOptions{})
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// presigner returns the opened store as a Presigner.
func (l *LazyStore) presigner(ctx context.Context) (Presigner, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	p, ok := s.(Presigner)
	if !ok {
		return nil, fmt.Errorf("snapshot store %T cannot presign URLs: %w", s, errdefs.ErrInvalid)
	}
	return p, nil
}

// PresignGet implements Presigner when the opened store does.
func (l *LazyStore) PresignGet(ctx context.Context, key string, ttl time.Duration) (*url.URL, error) {
	p, err := l.presigner(ctx)
	if err != nil {
		return nil, err
	}
	return p.PresignGet(ctx, key, ttl)
}

// PresignPut implements Presigner when the opened store does.
func (l *LazyStore) PresignPut(ctx context.Context, key string, ttl time.Duration) (*url.URL, error) {
	p, err := l.presigner(ctx)
	if err != nil {
		return nil, err
	}
	return p.PresignPut(ctx, key, ttl)
}

// Commit implements Presigner when the opened store does.
func (l *LazyStore) Commit(ctx context.Context, key string, m Manifest) (Manifest, error) {
	p, err := l.presigner(ctx)
	if err != nil {
		return Manifest{}, err
	}
	return p.Commit(ctx, key, m)
}

// DownloadURL fetches a packed snapshot from a presigned GET URL and
// unpacks it into dir while verifying it against want (PackedBytes and
// SHA256 as registered; Key names it in errors). dir is usable only when
// the error is nil. As with Download, the error is ProvenBad only for what
// the object itself shows: a 404 (it is gone), a size that the server
// states differs from want's, or bytes that arrived whole yet do not match
// or decode. A refused or expired URL, a server error, a transfer cut short
// or a full local disk say nothing about the snapshot.
func DownloadURL(ctx context.Context, client *http.Client, rawURL string, want Manifest, dir string) error {
	key := want.Key
	if key == "" {
		key = redactURL(rawURL)
	}
	if want.PackedBytes <= 0 || !validSHA256(want.SHA256) {
		return fmt.Errorf("download %s: %w: need the packed size and a sha256 (got %d bytes, %q)", key, errdefs.ErrInvalid, want.PackedBytes, want.SHA256)
	}
	if err := checkHTTPURL(rawURL); err != nil {
		return fmt.Errorf("download %s: %w", key, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("download %s: %w: %w", key, errdefs.ErrInvalid, redactURLError(err))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w: %w", key, errdefs.ErrUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download %s: %w", key, statusError("GET", resp))
	}
	// The server states the size of its copy: if that is not the size
	// registered, reading it would only confirm it.
	if resp.ContentLength >= 0 && !resp.Uncompressed && resp.ContentLength != want.PackedBytes {
		return fmt.Errorf("download %s: %w: the stored object is %d bytes, the snapshot was registered with %d",
			key, ErrCorrupt, resp.ContentLength, want.PackedBytes)
	}
	want.Key = key
	var vr *verifyingReader
	// Asking again means asking the HTTP framing: a body that ends cleanly
	// (Content-Length met, or the last chunk arrived) is the server's whole
	// object; one cut short fails the read instead, never reaching this.
	recheck := func() (Manifest, int64, error) {
		if resp.ContentLength >= 0 && !resp.Uncompressed {
			return want, resp.ContentLength, nil
		}
		return want, vr.n, nil
	}
	vr = newVerifyingReader(httpBody{resp.Body}, want, recheck)
	return unpackVerified(ctx, vr, key, want.PackedBytes, dir)
}

// httpBody classifies an HTTP body's read errors as transport failures.
type httpBody struct{ r io.ReadCloser }

func (b httpBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, redactURLError(err))
	}
	return n, err
}

func (b httpBody) Close() error { return b.r.Close() }

// URLUpload reports an UploadURL.
type URLUpload struct {
	// RawBytes is the size of the image directory, PackedBytes and SHA256
	// those of the uploaded object.
	RawBytes    int64
	PackedBytes int64
	SHA256      string
	// PackTime and UploadTime split the call's duration.
	PackTime   time.Duration
	UploadTime time.Duration
}

// UploadURL packs imgDir and uploads it to a presigned PUT URL. The packed
// bytes go to a temporary file in tmpDir first, removed before returning:
// a presigned PUT needs its Content-Length up front (S3 takes no chunked
// upload there). The checksum is computed while packing, of the bytes the
// file holds and the PUT sends.
func UploadURL(ctx context.Context, client *http.Client, rawURL, imgDir, tmpDir string) (URLUpload, error) {
	var out URLUpload
	if err := checkHTTPURL(rawURL); err != nil {
		return out, fmt.Errorf("upload: %w", err)
	}
	start := time.Now()
	f, err := os.CreateTemp(tmpDir, "pronghorn-pack-*.tar.zst")
	if err != nil {
		return out, fmt.Errorf("upload: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if out.RawBytes, err = Pack(ctx, imgDir, io.MultiWriter(f, h)); err != nil {
		return out, fmt.Errorf("upload: %w", err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return out, fmt.Errorf("upload: %w", err)
	}
	out.PackTime = time.Since(start)

	start = time.Now()
	// The transport sends exactly ContentLength bytes or fails the request.
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, rawURL, io.NopCloser(f))
	if err != nil {
		return out, fmt.Errorf("upload: %w: %w", errdefs.ErrInvalid, redactURLError(err))
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/zstd")
	resp, err := client.Do(req)
	if err != nil {
		return out, fmt.Errorf("upload to %s: %w: %w", redactURL(rawURL), errdefs.ErrUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return out, fmt.Errorf("upload to %s: %w", redactURL(rawURL), statusError("PUT", resp))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	out.PackedBytes, out.SHA256 = size, hex.EncodeToString(h.Sum(nil))
	out.UploadTime = time.Since(start)
	return out, nil
}

// checkHTTPURL refuses what is not an absolute http(s) URL before any
// request is made, so a malformed plan is reported as such.
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: bad URL: %w", errdefs.ErrInvalid, redactURLError(err))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: URL %s is not absolute http(s)", errdefs.ErrInvalid, redactURL(raw))
	}
	return nil
}

// statusError describes a failed answer of an S3 server. Only a 404 says
// the object (or its bucket) is gone; a 403 is an expired or foreign
// signature, which proves nothing about the object.
func statusError(method string, resp *http.Response) error {
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	what := resp.Status
	if xml.Unmarshal(b, &e) == nil && e.Code != "" {
		what += ": " + e.Code
		if e.Message != "" {
			what += " (" + e.Message + ")"
		}
	}
	kind := errdefs.ErrUnavailable
	if resp.StatusCode == http.StatusNotFound {
		kind = errdefs.ErrNotFound
	}
	return fmt.Errorf("%s answered %s: %w", method, what, kind)
}

// redactURL drops a URL's query: a presigned URL's signature is a
// credential for its object until it expires, and must not reach logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			return raw[:i]
		}
		return raw
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// redactURLError strips the query from the URL that net/http and net/url
// put into their errors.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	return err
}
