package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Upload packs the image directory imgDir and streams it into store under
// key, with no copy on disk. m supplies the manifest's descriptive fields;
// the stored manifest (checksum, sizes, UploadTime) is returned. Put is
// atomic, so a failure leaves nothing under key.
func Upload(ctx context.Context, store Store, key, imgDir string, m Manifest) (Manifest, error) {
	if err := validateKey(key); err != nil {
		return Manifest{}, err
	}
	start := time.Now()
	pr, pw := io.Pipe()
	rawc := make(chan int64, 1)
	go func() {
		raw, err := Pack(ctx, imgDir, pw)
		rawc <- raw
		// A pack error fails the store's reader, which makes Put discard.
		pw.CloseWithError(err)
	}()
	out, err := store.Put(ctx, key, pr, m)
	// If Put gave up early, unblock the packer.
	pr.CloseWithError(errors.New("upload finished"))
	raw := <-rawc
	if err != nil {
		return Manifest{}, fmt.Errorf("upload %s: %w", key, err)
	}
	out.UploadTime = time.Since(start)
	// The raw size is informational; record the true value.
	out.RawBytes = raw
	return out, nil
}

// Download fetches key from store and unpacks it into dir while verifying
// it. dir is usable only when the error is nil. The error tells whether the
// snapshot is at fault (see ProvenBad): it wraps ErrCorrupt only when the
// store's own copy disagrees with its manifest, or when all of it arrived
// and matched yet does not decode; a failed transfer, a timeout or a full
// local disk are reported as what they are.
func Download(ctx context.Context, store Store, key, dir string) (Manifest, error) {
	body, m, err := store.Get(ctx, key)
	if err != nil {
		return Manifest{}, fmt.Errorf("download %s: %w", key, err)
	}
	defer body.Close()
	return m, unpackVerified(ctx, body, key, m.PackedBytes, dir)
}

// unpackVerified unpacks body, a reader that verifies what passes through
// it (sticky errors, its verdict at EOF), into dir, and tells a snapshot at
// fault from a transfer or a local disk that failed.
func unpackVerified(ctx context.Context, body io.Reader, key string, packed int64, dir string) error {
	_, err := Unpack(ctx, body, dir)
	if err == nil {
		return nil
	}
	var se *streamError
	if !errors.As(err, &se) {
		// Writing dir failed (ENOSPC, EIO) or ctx ended: nothing is known
		// about the snapshot, and the rest of it need not be fetched.
		return fmt.Errorf("download %s: %w", key, err)
	}
	// The stream failed to decode, or failed under the decoder. Reading on
	// gives the store's verdict: the reader is sticky, so a transfer error
	// the decoder hit comes back, and a damaged object shows at EOF.
	if _, verr := io.Copy(io.Discard, body); verr != nil {
		if errors.Is(err, verr) {
			return fmt.Errorf("download %s: %w", key, verr)
		}
		return fmt.Errorf("download %s: %w (unpacking stopped with: %v)", key, verr, err)
	}
	return fmt.Errorf("download %s: %w: all %d bytes arrived and match the manifest, but: %w", key, ErrCorrupt, packed, err)
}
