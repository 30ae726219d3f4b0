package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// DirStore keeps snapshots in a local directory: the object at
// objects/<key> and its manifest at manifests/<key>.json. The manifest is
// written last, so its presence is what makes a snapshot exist.
type DirStore struct {
	dir string
}

var (
	_ Store             = (*DirStore)(nil)
	_ IncompleteCleaner = (*DirStore)(nil)
)

// NewDirStore creates dir (and its subdirectories) if needed.
func NewDirStore(dir string) (*DirStore, error) {
	for _, sub := range []string{"objects", "manifests", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("dir store %s: %w", dir, err)
		}
	}
	return &DirStore{dir: dir}, nil
}

func (s *DirStore) objectPath(key string) string {
	return filepath.Join(s.dir, "objects", filepath.FromSlash(key))
}

func (s *DirStore) manifestPath(key string) string {
	return filepath.Join(s.dir, "manifests", filepath.FromSlash(key)+".json")
}

// Put implements Store.
func (s *DirStore) Put(ctx context.Context, key string, r io.Reader, m Manifest) (Manifest, error) {
	if err := validateKey(key); err != nil {
		return Manifest{}, err
	}
	hr := newHashingReader(ctxReader{ctx: ctx, r: r})
	// The temp file lives in the store's own tmp dir (same filesystem) so the
	// final rename is atomic.
	tmpObj, err := writeTemp(filepath.Join(s.dir, "tmp"), hr)
	if err != nil {
		return Manifest{}, fmt.Errorf("dir store put %s: %w", key, err)
	}
	defer os.Remove(tmpObj) // no-op after a successful rename
	m.Key = key
	m.PackedBytes = hr.n
	m.SHA256 = hr.sum()
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	mb, err := m.marshal()
	if err != nil {
		return Manifest{}, err
	}
	tmpMan, err := writeTemp(filepath.Join(s.dir, "tmp"), strings.NewReader(string(mb)))
	if err != nil {
		return Manifest{}, fmt.Errorf("dir store put %s: manifest: %w", key, err)
	}
	defer os.Remove(tmpMan)
	objPath, manPath := s.objectPath(key), s.manifestPath(key)
	for _, p := range []string{objPath, manPath} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return Manifest{}, fmt.Errorf("dir store put %s: %w", key, err)
		}
	}
	// Replacing an existing key: drop its manifest first so a crash between
	// the two renames never pairs the old manifest with the new object.
	if err := os.Remove(manPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("dir store put %s: %w", key, err)
	}
	if err := os.Rename(tmpObj, objPath); err != nil {
		return Manifest{}, fmt.Errorf("dir store put %s: %w", key, err)
	}
	if err := os.Rename(tmpMan, manPath); err != nil {
		os.Remove(objPath)
		return Manifest{}, fmt.Errorf("dir store put %s: %w", key, err)
	}
	syncDir(filepath.Dir(objPath))
	syncDir(filepath.Dir(manPath))
	return m, nil
}

// writeTemp copies r into a new fsynced temp file in dir and returns its
// path; on error the file is removed.
func writeTemp(dir string, r io.Reader) (string, error) {
	f, err := os.CreateTemp(dir, ".put-*")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDir makes renames durable; failures are not fatal because the data
// itself was already fsynced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Get implements Store.
func (s *DirStore) Get(ctx context.Context, key string) (io.ReadCloser, Manifest, error) {
	m, err := s.Stat(ctx, key)
	if err != nil {
		return nil, Manifest{}, err
	}
	f, err := os.Open(s.objectPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Manifest{}, fmt.Errorf("dir store get %s: object missing: %w", key, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("dir store get %s: %w", key, err)
	}
	recheck := func() (Manifest, int64, error) {
		cur, err := s.Stat(ctx, key)
		if err != nil {
			return Manifest{}, 0, err
		}
		fi, err := os.Stat(s.objectPath(key))
		if errors.Is(err, fs.ErrNotExist) {
			return Manifest{}, 0, fmt.Errorf("dir store: snapshot %s: object missing: %w", key, errdefs.ErrNotFound)
		}
		if err != nil {
			return Manifest{}, 0, fmt.Errorf("dir store: snapshot %s: %w", key, err)
		}
		return cur, fi.Size(), nil
	}
	return newVerifyingReader(f, m, recheck), m, nil
}

// Stat implements Store.
func (s *DirStore) Stat(_ context.Context, key string) (Manifest, error) {
	if err := validateKey(key); err != nil {
		return Manifest{}, err
	}
	b, err := os.ReadFile(s.manifestPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("dir store: snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("dir store: snapshot %s: %w", key, err)
	}
	return unmarshalManifest(b)
}

// Delete implements Store.
func (s *DirStore) Delete(_ context.Context, key string) error {
	if err := validateKey(key); err != nil {
		return err
	}
	// Manifest first: once it is gone the snapshot no longer exists, even if
	// removing the object fails afterwards.
	merr := os.Remove(s.manifestPath(key))
	oerr := os.Remove(s.objectPath(key))
	if errors.Is(merr, fs.ErrNotExist) && errors.Is(oerr, fs.ErrNotExist) {
		return fmt.Errorf("dir store delete %s: %w", key, errdefs.ErrNotFound)
	}
	for _, err := range []error{merr, oerr} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("dir store delete %s: %w", key, err)
		}
	}
	return nil
}

// List implements Store.
func (s *DirStore) List(ctx context.Context, prefix string) ([]Manifest, error) {
	root := filepath.Join(s.dir, "manifests")
	var out []Manifest
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".json") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		key := strings.TrimSuffix(filepath.ToSlash(rel), ".json")
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted concurrently
		}
		if err != nil {
			return err
		}
		m, err := unmarshalManifest(b)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dir store list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// CleanIncomplete implements IncompleteCleaner: it removes the temporary
// files of interrupted Puts and objects without a manifest (a Put killed
// between its two renames, or a Delete killed between its two removes).
func (s *DirStore) CleanIncomplete(ctx context.Context) (int, error) {
	n := 0
	tmp := filepath.Join(s.dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return n, fmt.Errorf("dir store clean: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return n, fmt.Errorf("dir store clean: %w", err)
		}
		n++
	}
	root := filepath.Join(s.dir, "objects")
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		_, err = os.Stat(s.manifestPath(filepath.ToSlash(rel)))
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("dir store clean: %w", err)
	}
	return n, nil
}
