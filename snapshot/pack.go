package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Pack writes the regular files of dir (CRIU images are a flat directory, but
// subdirectories are kept) as a zstd-compressed tar stream to w and returns
// the number of file bytes packed. Compression uses the fastest level: dump
// latency matters more than a few percent of size, and CRIU page images
// compress well anyway.
func Pack(ctx context.Context, dir string, w io.Writer) (int64, error) {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return 0, fmt.Errorf("pack: zstd writer: %w", err)
	}
	tw := tar.NewWriter(zw)
	var raw int64
	walkErr := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: filepath.ToSlash(rel) + "/", Mode: 0o700})
		case info.Mode().IsRegular():
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.ToSlash(rel), Mode: 0o600, Size: info.Size()}); err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			n, err := io.Copy(tw, f)
			f.Close()
			raw += n
			return err
		default:
			// CRIU writes only regular files; anything else is not ours to ship.
			return nil
		}
	})
	if walkErr != nil {
		zw.Close()
		return raw, fmt.Errorf("pack %s: %w", dir, walkErr)
	}
	if err := tw.Close(); err != nil {
		zw.Close()
		return raw, fmt.Errorf("pack: tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return raw, fmt.Errorf("pack: zstd: %w", err)
	}
	return raw, nil
}

// Unpack extracts a stream produced by Pack into dir (which must exist) and
// returns the number of file bytes written. It reads r to EOF even after the
// tar end marker, so a verifying reader underneath gets to check the
// checksum; callers must not use dir if Unpack fails.
//
// Errors that came from reading or decoding r are tagged (streamError) so
// that Download can tell them from local ones (writing dir, ctx): a full
// disk says nothing about the snapshot.
func Unpack(ctx context.Context, r io.Reader, dir string) (int64, error) {
	// Concurrency 1 decodes synchronously inside Read, so once the decoder is
	// closed nobody else reads r and we can drain it safely.
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false))
	if err != nil {
		return 0, fmt.Errorf("unpack: zstd reader: %w", &streamError{err})
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	src := streamReader{tr}
	var raw int64
	root := filepath.Clean(dir) + string(os.PathSeparator)
	for {
		if err := ctx.Err(); err != nil {
			return raw, fmt.Errorf("unpack: %w", err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return raw, fmt.Errorf("unpack: tar: %w", &streamError{err})
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		// Refuse entries escaping dir even though the checksum is verified:
		// a store is not a trust boundary for the filesystem.
		if !strings.HasPrefix(target+string(os.PathSeparator), root) && target != filepath.Clean(dir) {
			return raw, fmt.Errorf("unpack: %w", &streamError{fmt.Errorf("entry %q escapes the image dir: %w", hdr.Name, ErrCorrupt)})
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return raw, fmt.Errorf("unpack: %w", err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return raw, fmt.Errorf("unpack: %w", err)
			}
			n, err := io.Copy(f, src)
			raw += n
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return raw, fmt.Errorf("unpack %s: %w", hdr.Name, err)
			}
		default:
			return raw, fmt.Errorf("unpack: %w", &streamError{fmt.Errorf("unexpected entry type %q for %s: %w", hdr.Typeflag, hdr.Name, ErrCorrupt)})
		}
	}
	// Drain the decompressor (zstd frame end) and then the raw stream, so
	// that the store's verifying reader sees EOF and reports any mismatch.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return raw, fmt.Errorf("unpack: trailing data: %w", &streamError{err})
	}
	zr.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		return raw, fmt.Errorf("unpack: %w", &streamError{err})
	}
	return raw, nil
}

// streamError marks an Unpack failure that came from the packed stream:
// reading it (the store or the transfer failed) or decoding it (the bytes
// are bad). Which of the two only the reader underneath can tell.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// streamReader tags read errors of the archive, so that io.Copy into a file
// returns them distinguishable from the file's own write errors.
type streamReader struct{ r io.Reader }

func (s streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &streamError{err}
	}
	return n, err
}
