package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ErrCorrupt marks a stored object whose bytes do not match its manifest
// (checksum or length mismatch, failed decryption, truncation).
var ErrCorrupt = errors.New("snapshot corrupt")

// Store keeps packed snapshots, one object per key, each with a Manifest.
type Store interface {
	// Put stores everything read from r under key. The returned manifest is m
	// completed with Key, PackedBytes, SHA256 and CreatedAt. Put is atomic: if
	// r or the backend fails, nothing is left under key.
	Put(ctx context.Context, key string, r io.Reader, m Manifest) (Manifest, error)
	// Get opens the object. The reader verifies the checksum while it is read
	// and its final Read returns an error wrapping ErrCorrupt on a mismatch, so
	// callers must read to EOF before trusting the data.
	Get(ctx context.Context, key string) (io.ReadCloser, Manifest, error)
	// Stat returns the manifest without reading the object.
	Stat(ctx context.Context, key string) (Manifest, error)
	// Delete removes the object and its manifest; a missing key is ErrNotFound.
	Delete(ctx context.Context, key string) error
	// List returns the manifests of all objects whose key starts with prefix.
	List(ctx context.Context, prefix string) ([]Manifest, error)
}

// verifyingReader hashes what passes through it and turns EOF into an
// ErrCorrupt error when size or digest differ from the manifest.
type verifyingReader struct {
	r      io.ReadCloser
	h      hash.Hash
	n      int64
	want   string
	size   int64
	key    string
	result error // sticky verdict once EOF was seen
}

func newVerifyingReader(r io.ReadCloser, m Manifest) *verifyingReader {
	return &verifyingReader{r: r, h: sha256.New(), want: m.SHA256, size: m.PackedBytes, key: m.Key}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.result != nil {
		return 0, v.result
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	if v.n > v.size {
		v.result = fmt.Errorf("snapshot %s: %w: object longer than the %d bytes in its manifest", v.key, ErrCorrupt, v.size)
		return n, v.result
	}
	if errors.Is(err, io.EOF) {
		got := hex.EncodeToString(v.h.Sum(nil))
		switch {
		case v.n != v.size:
			v.result = fmt.Errorf("snapshot %s: %w: truncated: %d of %d bytes", v.key, ErrCorrupt, v.n, v.size)
		case got != v.want:
			v.result = fmt.Errorf("snapshot %s: %w: sha256 %s, manifest says %s", v.key, ErrCorrupt, got, v.want)
		default:
			v.result = io.EOF
		}
		return n, v.result
	}
	if err != nil {
		// A transport error mid-object is not corruption; report it as is.
		return n, fmt.Errorf("snapshot %s: read: %w", v.key, err)
	}
	return n, nil
}

func (v *verifyingReader) Close() error { return v.r.Close() }

// hashingReader counts and hashes what a Put consumes.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newHashingReader(r io.Reader) *hashingReader { return &hashingReader{r: r, h: sha256.New()} }

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	h.h.Write(p[:n])
	return n, err
}

func (h *hashingReader) sum() string { return hex.EncodeToString(h.h.Sum(nil)) }

// ctxReader stops a long copy promptly when the context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
