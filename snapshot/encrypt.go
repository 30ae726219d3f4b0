package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// The on-store format is described in the package documentation.
const (
	encMagic       = "PHGCM1"
	encChunkSize   = 64 << 10
	encPrefixLen   = 7
	encHeaderLen   = len(encMagic) + 4 + encPrefixLen
	encTagLen      = 16
	encMaxChunkLen = 1 << 24 // refuse absurd chunk sizes from a hostile header
)

// EncryptedStore encrypts objects with AES-256-GCM before they reach the
// inner store and decrypts them on Get. See the package doc for the format.
//
// It is not a Presigner, whatever the inner store: a worker that moves an
// object through a presigned URL would have to hold the key to encrypt or
// decrypt it. So with an encrypted store Kubernetes pods, which never get
// the provider's secrets, take no part in snapshots and always start cold.
type EncryptedStore struct {
	inner Store
	aead  cipher.AEAD
	keyID string
}

var (
	_ Store             = (*EncryptedStore)(nil)
	_ IncompleteCleaner = (*EncryptedStore)(nil)
)

// NewEncryptedStore wraps inner; key must be 32 bytes (AES-256).
func NewEncryptedStore(inner Store, key []byte) (*EncryptedStore, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encrypted store: key is %d bytes, want 32: %w", len(key), errdefs.ErrInvalid)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encrypted store: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("encrypted store: %w", err)
	}
	return &EncryptedStore{inner: inner, aead: aead, keyID: keyID(key)}, nil
}

// keyID names a key without revealing it, so that a snapshot sealed with
// another key (a rotated or misconfigured one) is reported as such instead
// of as tampering: that snapshot is intact, only not for us.
func keyID(key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("pronghorn snapshot key id"))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

// LoadKeyFile reads a 32-byte key stored raw, as 64 hex digits or as base64
// (surrounding whitespace ignored), e.g. a mounted Kubernetes Secret.
func LoadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot key %s: %w", path, err)
	}
	if len(b) == 32 {
		return b, nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 64 {
		if k, err := hex.DecodeString(string(t)); err == nil {
			return k, nil
		}
	}
	if k, err := base64.StdEncoding.DecodeString(string(t)); err == nil && len(k) == 32 {
		return k, nil
	}
	return nil, fmt.Errorf("snapshot key %s: want 32 raw bytes, 64 hex digits or base64 of 32 bytes: %w", path, errdefs.ErrInvalid)
}

// Put implements Store.
func (s *EncryptedStore) Put(ctx context.Context, key string, r io.Reader, m Manifest) (Manifest, error) {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(s.encrypt(pw, r))
	}()
	m.Encrypted = true
	m.KeyID = s.keyID
	out, err := s.inner.Put(ctx, key, pr, m)
	// Unblock the encrypting goroutine if the inner store stopped reading.
	pr.CloseWithError(errors.New("encrypted store: put finished"))
	return out, err
}

func (s *EncryptedStore) encrypt(w io.Writer, r io.Reader) error {
	header := make([]byte, encHeaderLen)
	copy(header, encMagic)
	binary.BigEndian.PutUint32(header[len(encMagic):], encChunkSize)
	if _, err := rand.Read(header[len(encMagic)+4:]); err != nil {
		return fmt.Errorf("encrypt: nonce: %w", err)
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	prefix := header[len(encMagic)+4:]
	// Read one chunk ahead so the last chunk can be flagged as such.
	cur := make([]byte, encChunkSize)
	next := make([]byte, encChunkSize)
	out := make([]byte, 0, encChunkSize+encTagLen)
	n, err := io.ReadFull(r, cur)
	var counter uint32
	for {
		last := false
		var m int
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			last = true
		case err != nil:
			return fmt.Errorf("encrypt: read: %w", err)
		default:
			m, err = io.ReadFull(r, next)
			if errors.Is(err, io.EOF) {
				last = true
			}
		}
		out = s.aead.Seal(out[:0], chunkNonce(prefix, counter, last), cur[:n], header)
		if _, werr := w.Write(out); werr != nil {
			return werr
		}
		if last {
			return nil
		}
		counter++
		if counter == 0 {
			return errors.New("encrypt: too many chunks")
		}
		cur, next = next, cur
		n = m
	}
}

func chunkNonce(prefix []byte, counter uint32, last bool) []byte {
	nonce := make([]byte, 12)
	copy(nonce, prefix)
	binary.BigEndian.PutUint32(nonce[encPrefixLen:], counter)
	if last {
		nonce[11] = 1
	}
	return nonce
}

// Get implements Store.
func (s *EncryptedStore) Get(ctx context.Context, key string) (io.ReadCloser, Manifest, error) {
	rc, m, err := s.inner.Get(ctx, key)
	if err != nil {
		return nil, Manifest{}, err
	}
	if !m.Encrypted {
		rc.Close()
		return nil, Manifest{}, fmt.Errorf("encrypted store: snapshot %s is not encrypted: %w", key, ErrCorrupt)
	}
	if m.KeyID != "" && m.KeyID != s.keyID {
		rc.Close()
		return nil, Manifest{}, fmt.Errorf("encrypted store: snapshot %s was encrypted with another key (id %s, ours is %s): %w",
			key, m.KeyID, s.keyID, errdefs.ErrInvalid)
	}
	return &decryptReader{aead: s.aead, src: rc, br: bufio.NewReaderSize(rc, encChunkSize+encTagLen+1), key: key}, m, nil
}

// Stat implements Store.
func (s *EncryptedStore) Stat(ctx context.Context, key string) (Manifest, error) {
	return s.inner.Stat(ctx, key)
}

// Delete implements Store.
func (s *EncryptedStore) Delete(ctx context.Context, key string) error {
	return s.inner.Delete(ctx, key)
}

// List implements Store.
func (s *EncryptedStore) List(ctx context.Context, prefix string) ([]Manifest, error) {
	return s.inner.List(ctx, prefix)
}

// CleanIncomplete implements IncompleteCleaner for the inner store.
func (s *EncryptedStore) CleanIncomplete(ctx context.Context) (int, error) {
	if c, ok := s.inner.(IncompleteCleaner); ok {
		return c.CleanIncomplete(ctx)
	}
	return 0, nil
}

type decryptReader struct {
	aead    cipher.AEAD
	src     io.Closer
	br      *bufio.Reader
	key     string
	header  []byte
	chunk   []byte // ciphertext buffer
	plain   []byte // decrypted, not yet returned
	counter uint32
	done    bool
	err     error
}

func (d *decryptReader) fail(format string, args ...any) error {
	d.err = fmt.Errorf("snapshot %s: decrypt: %w: %s", d.key, ErrCorrupt, fmt.Sprintf(format, args...))
	return d.err
}

func (d *decryptReader) Read(p []byte) (int, error) {
	for len(d.plain) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.done {
			// Reach the inner EOF so its checksum verdict is delivered.
			if _, err := d.br.ReadByte(); err == nil {
				return 0, d.fail("data after the final chunk")
			} else if err != io.EOF {
				d.err = err
				return 0, err
			}
			d.err = io.EOF
			return 0, io.EOF
		}
		if err := d.nextChunk(); err != nil {
			return 0, err
		}
	}
	n := copy(p, d.plain)
	d.plain = d.plain[n:]
	return n, nil
}

func (d *decryptReader) nextChunk() error {
	if d.header == nil {
		h := make([]byte, encHeaderLen)
		if _, err := io.ReadFull(d.br, h); err != nil {
			return d.wrapRead(err, "header")
		}
		if string(h[:len(encMagic)]) != encMagic {
			return d.fail("bad magic")
		}
		size := binary.BigEndian.Uint32(h[len(encMagic):])
		if size == 0 || size > encMaxChunkLen {
			return d.fail("bad chunk size %d", size)
		}
		d.header = h
		d.chunk = make([]byte, int(size)+encTagLen)
	}
	n, err := io.ReadFull(d.br, d.chunk)
	last := false
	switch {
	case cleanEOF(err):
		last = true
	case err != nil:
		return d.wrapRead(err, "chunk")
	default:
		// A full chunk is the last one only if nothing follows it.
		if _, perr := d.br.Peek(1); perr == io.EOF {
			last = true
		} else if perr != nil {
			return d.wrapRead(perr, "chunk")
		}
	}
	if last && n < encTagLen {
		return d.fail("truncated: no final chunk")
	}
	plain, oerr := d.aead.Open(d.chunk[:0:0], chunkNonce(d.header[len(encMagic)+4:], d.counter, last), d.chunk[:n], d.header)
	if oerr != nil {
		if last {
			return d.fail("chunk %d: authentication failed (wrong key, tampered or truncated)", d.counter)
		}
		return d.fail("chunk %d: authentication failed (wrong key or tampered)", d.counter)
	}
	d.plain = plain
	d.counter++
	d.done = last
	return nil
}

// wrapRead keeps the inner reader's verdict (its own ErrCorrupt, or a
// failed transfer) while turning a premature clean EOF into a truncation
// error.
func (d *decryptReader) wrapRead(err error, what string) error {
	if cleanEOF(err) {
		return d.fail("truncated %s", what)
	}
	// The inner reader's error already names the snapshot and the cause.
	d.err = err
	return d.err
}

// cleanEOF reports an end of the ciphertext that the inner store vouched
// for: its verifying reader returns a bare io.EOF only once the object
// matched its manifest, and io.ReadFull turns that into a bare
// io.ErrUnexpectedEOF mid-chunk. A transfer cut short arrives wrapped (and
// may wrap io.ErrUnexpectedEOF), which proves nothing about the snapshot, so
// the comparison is by identity on purpose.
func cleanEOF(err error) bool {
	return err == io.EOF || err == io.ErrUnexpectedEOF
}

func (d *decryptReader) Close() error { return d.src.Close() }
