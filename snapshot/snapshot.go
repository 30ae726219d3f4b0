package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Checkpoint dumps pid (leaving it running) into a temporary directory
// under workDir, streams it packed into store under key and removes the
// directory. m supplies Function, Runtime and RequestNumber; the stored
// manifest is returned. On any failure the process keeps running and the
// store holds nothing under key (Put is atomic).
func Checkpoint(ctx context.Context, c *CRIU, store Store, pid int, key string, m Manifest, workDir string) (Manifest, error) {
	if err := validateKey(key); err != nil {
		return Manifest{}, err
	}
	imgDir, err := os.MkdirTemp(workDir, "dump-*")
	if err != nil {
		return Manifest{}, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	st, err := c.Dump(ctx, pid, imgDir, DumpOptions{})
	if err != nil {
		// Keep only criu's log for diagnosis; partial page images are large.
		keepOnly(imgDir, dumpLog)
		return Manifest{}, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	defer os.RemoveAll(imgDir)

	m.DumpTime = st.Duration
	m.RawBytes = st.ImageBytes
	out, err := Upload(ctx, store, key, imgDir, m)
	if err != nil {
		return Manifest{}, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	return out, nil
}

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
// it. dir is usable only when the error is nil: a corrupt or truncated object
// is reported (wrapping ErrCorrupt) before anyone restores from it.
func Download(ctx context.Context, store Store, key, dir string) (Manifest, error) {
	body, m, err := store.Get(ctx, key)
	if err != nil {
		return Manifest{}, fmt.Errorf("download %s: %w", key, err)
	}
	defer body.Close()
	if _, err := Unpack(ctx, body, dir); err != nil {
		// A decoder error on a corrupt object usually comes before the
		// checksum verdict; drain the body so the verdict (ErrCorrupt) is
		// reported instead of a zstd/tar message.
		if _, verr := io.Copy(io.Discard, body); verr != nil && errors.Is(verr, ErrCorrupt) {
			return m, fmt.Errorf("download %s: %w", key, verr)
		}
		return m, fmt.Errorf("download %s: %w", key, err)
	}
	return m, nil
}

// Restore downloads key from store into a temporary directory under
// workDir while verifying and unpacking it, then restores it with CRIU as a
// child of the caller. Nothing is restored unless the whole object was
// verified. The temporary directory is removed afterwards (CRIU no longer
// needs the images once the process runs). The returned manifest has
// RestoreTime set.
func Restore(ctx context.Context, c *CRIU, store Store, key string, workDir string, opts RestoreOptions) (int, Manifest, error) {
	start := time.Now()
	imgDir, err := os.MkdirTemp(workDir, "restore-*")
	if err != nil {
		return 0, Manifest{}, fmt.Errorf("restore %s: %w", key, err)
	}
	defer os.RemoveAll(imgDir)
	m, err := Download(ctx, store, key, imgDir)
	if err != nil {
		return 0, m, fmt.Errorf("restore: %w", err)
	}
	pid, err := c.Restore(ctx, imgDir, opts)
	if err != nil {
		return 0, m, fmt.Errorf("restore %s: %w", key, err)
	}
	m.RestoreTime = time.Since(start)
	return pid, m, nil
}

// keepOnly removes everything in dir except the named file; if that file
// does not exist the directory goes too.
func keepOnly(dir, name string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	kept := false
	for _, e := range entries {
		if e.Name() == name {
			kept = true
			continue
		}
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
	if !kept {
		os.Remove(dir)
	}
}
