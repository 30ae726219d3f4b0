package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// ErrCorrupt marks a snapshot proven bad: a stored object whose bytes do not
// match its manifest (checksum or length), an archive or ciphertext that does
// not decode although all of it arrived and matched, or images CRIU rejects
// as damaged.
var ErrCorrupt = errors.New("snapshot corrupt")

// ProvenBad reports whether err proves the snapshot itself unusable, so that
// deleting it is right: it is corrupt (ErrCorrupt) or gone
// (errdefs.ErrNotFound). Anything else (a store that is down, a dropped
// connection, a timeout, a full local disk) says nothing about the snapshot,
// which must be kept for the next attempt.
//
// Pass it errors of Download, Store.Get and CRIU.Restore; a Dump error can
// wrap ErrNotFound for a process that is gone, which is not about any
// snapshot.
func ProvenBad(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, errdefs.ErrNotFound)
}

// Store keeps packed snapshots, one object per key, each with a Manifest.
type Store interface {
	// Put stores everything read from r under key. The returned manifest is m
	// completed with Key, PackedBytes, SHA256 and CreatedAt. Put is atomic: if
	// r or the backend fails, nothing is left under key.
	Put(ctx context.Context, key string, r io.Reader, m Manifest) (Manifest, error)
	// Get opens the object. The reader verifies the checksum while it is read
	// and its final Read returns an error wrapping ErrCorrupt on a mismatch
	// that the stored object itself shows, so callers must read to EOF before
	// trusting the data. A transfer that fails or ends early is reported as
	// such (wrapping errdefs.ErrUnavailable), never as ErrCorrupt.
	Get(ctx context.Context, key string) (io.ReadCloser, Manifest, error)
	// Stat returns the manifest without reading the object.
	Stat(ctx context.Context, key string) (Manifest, error)
	// Delete removes the object and its manifest; a missing key is ErrNotFound.
	Delete(ctx context.Context, key string) error
	// List returns the manifests of all objects whose key starts with prefix.
	List(ctx context.Context, prefix string) ([]Manifest, error)
}

// IncompleteCleaner is a Store that can remove what interrupted Puts left
// behind (temporary files, unfinished multipart uploads, objects whose
// manifest was never written). It cannot tell an interrupted Put from one
// still running, nor an upload through a presigned URL from one not yet
// committed, so call it only when no Put or presigned upload to the store
// is in progress, e.g. when the provider starts. It returns how many
// leftovers it removed.
type IncompleteCleaner interface {
	CleanIncomplete(ctx context.Context) (int, error)
}

// recheckFunc asks the store again what it holds for a key: the current
// manifest and the size of the stored object.
type recheckFunc func() (Manifest, int64, error)

// verifyingReader hashes what passes through it and, at EOF, compares size
// and digest with the manifest. A mismatch is only called corruption once the
// store confirms that its own copy disagrees with the manifest: a transfer can
// end early without an error, and a key can be replaced while it is read.
type verifyingReader struct {
	r       io.ReadCloser
	h       hash.Hash
	n       int64
	m       Manifest
	recheck recheckFunc
	// err is sticky, so a caller draining the reader after a decoder gave up
	// sees the same verdict or transport error the decoder saw.
	err error
}

func newVerifyingReader(r io.ReadCloser, m Manifest, recheck recheckFunc) *verifyingReader {
	return &verifyingReader{r: r, h: sha256.New(), m: m, recheck: recheck}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	switch {
	case v.n > v.m.PackedBytes:
		v.err = v.mismatch(fmt.Sprintf("more than the %d bytes of its manifest arrived", v.m.PackedBytes), "")
	case err == io.EOF:
		got := hex.EncodeToString(v.h.Sum(nil))
		switch {
		case v.n != v.m.PackedBytes:
			v.err = v.mismatch(fmt.Sprintf("only %d of %d bytes arrived", v.n, v.m.PackedBytes), got)
		case got != v.m.SHA256:
			v.err = v.mismatch(fmt.Sprintf("sha256 %s, manifest says %s", got, v.m.SHA256), got)
		default:
			v.err = io.EOF
		}
	case err != nil:
		v.err = v.transportError(err)
	}
	if v.err != nil {
		return n, v.err
	}
	return n, nil
}

// transportError reports a read that failed mid-object: the store or the
// way to it failed, the snapshot may well be intact.
func (v *verifyingReader) transportError(err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("snapshot %s: read cancelled after %d of %d bytes: %w", v.m.Key, v.n, v.m.PackedBytes, err)
	}
	if errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("snapshot %s: read failed after %d of %d bytes: %w", v.m.Key, v.n, v.m.PackedBytes, err)
	}
	return fmt.Errorf("snapshot %s: read failed after %d of %d bytes: %w: %w", v.m.Key, v.n, v.m.PackedBytes, errdefs.ErrUnavailable, err)
}

// mismatch decides what a disagreement between the bytes read and the
// manifest means, by asking the store what it holds now. got is the digest
// of what arrived, if all of it did.
func (v *verifyingReader) mismatch(what, got string) error {
	cur, stored, err := v.recheck()
	switch {
	case err != nil:
		return fmt.Errorf("snapshot %s: %s, and the store could not be asked again: %w", v.m.Key, what, err)
	case cur.SHA256 != v.m.SHA256 || cur.PackedBytes != v.m.PackedBytes:
		return fmt.Errorf("snapshot %s: %s: it was replaced while being read: %w", v.m.Key, what, errdefs.ErrUnavailable)
	case stored != cur.PackedBytes:
		return fmt.Errorf("snapshot %s: %w: the stored object is %d bytes, its manifest says %d", v.m.Key, ErrCorrupt, stored, cur.PackedBytes)
	case v.n < stored:
		return fmt.Errorf("snapshot %s: transfer ended early (%s) though the stored object is complete: %w: %w",
			v.m.Key, what, errdefs.ErrUnavailable, io.ErrUnexpectedEOF)
	case v.n > stored:
		return fmt.Errorf("snapshot %s: transfer delivered more than the stored object (%s): %w", v.m.Key, what, errdefs.ErrUnavailable)
	default:
		return fmt.Errorf("snapshot %s: %w: sha256 %s, manifest says %s", v.m.Key, ErrCorrupt, got, v.m.SHA256)
	}
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
