package snapshot_test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// writable runs f with path (and its directory) writable by us. Root
// ignores the sealed modes; anyone else has to change them for f and puts
// them back afterwards, as someone covering their tracks would.
func writable(t *testing.T, path string, f func()) {
	t.Helper()
	if os.Geteuid() == 0 {
		f()
		return
	}
	for _, p := range []string{filepath.Dir(path), path} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o700); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(p, fi.Mode().Perm())
	}
	f()
}

func TestSeal(t *testing.T) {
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		// change alters the sealed dir; nil leaves it alone.
		change func(t *testing.T, dir string)
		want   string // in the error; "" means Verify must pass
	}{
		{name: "untouched"},
		{name: "read", change: func(t *testing.T, dir string) {
			_, err := os.ReadFile(filepath.Join(dir, "pages-1.img"))
			must(t, err)
		}},
		{name: "byte overwritten in place", want: "core-1000.img was modified", change: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "core-1000.img")
			writable(t, p, func() {
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				must(t, err)
				_, err = f.WriteAt([]byte{'X'}, 10)
				must(t, err)
				must(t, f.Close())
			})
		}},
		{name: "mtime put back after a write", want: "core-1000.img was modified", change: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "core-1000.img")
			fi, err := os.Stat(p)
			must(t, err)
			writable(t, p, func() {
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				must(t, err)
				_, err = f.WriteAt([]byte{'X'}, 10)
				must(t, err)
				must(t, f.Close())
				must(t, os.Chmod(p, fi.Mode()))
				must(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
			})
		}},
		{name: "appended", want: "pages-1.img", change: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "pages-1.img")
			writable(t, p, func() {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
				must(t, err)
				_, err = f.Write([]byte("more"))
				must(t, err)
				must(t, f.Close())
			})
		}},
		{name: "mode changed", want: "core-1000.img changed mode", change: func(t *testing.T, dir string) {
			must(t, os.Chmod(filepath.Join(dir, "core-1000.img"), 0o600))
		}},
		{name: "replaced by a copy", want: "core-1000.img was replaced", change: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "core-1000.img")
			b, err := os.ReadFile(p)
			must(t, err)
			writable(t, p, func() {
				tmp := filepath.Join(dir, ".tmp")
				must(t, os.WriteFile(tmp, b, 0o400))
				must(t, os.Rename(tmp, p))
			})
		}},
		{name: "hard link added elsewhere", want: "core-1000.img was modified", change: func(t *testing.T, dir string) {
			must(t, os.Link(filepath.Join(dir, "core-1000.img"), filepath.Join(t.TempDir(), "link")))
		}},
		{name: "file added", want: "extra.img was added", change: func(t *testing.T, dir string) {
			writable(t, dir, func() { must(t, os.WriteFile(filepath.Join(dir, "extra.img"), nil, 0o400)) })
		}},
		{name: "file removed", want: "stats-dump.img was removed", change: func(t *testing.T, dir string) {
			writable(t, dir, func() { must(t, os.Remove(filepath.Join(dir, "stats-dump.img"))) })
		}},
		{name: "file added in a subdirectory", want: "sub/new was added", change: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "sub", "new")
			writable(t, p, func() { must(t, os.WriteFile(p, nil, 0o400)) })
		}},
		{name: "directory replaced", want: "the directory was replaced", change: func(t *testing.T, dir string) {
			writable(t, dir, func() {
				must(t, os.Rename(dir, dir+".old"))
				must(t, os.CopyFS(dir, os.DirFS(dir+".old")))
			})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := makeImageDir(t)
			seal, err := snapshot.SealDir(dir)
			must(t, err)
			t.Cleanup(func() { unsealAll(dir) })
			// The seal travels as JSON in the provider's state.
			b, err := json.Marshal(seal)
			must(t, err)
			var back snapshot.Seal
			must(t, json.Unmarshal(b, &back))
			if tc.change != nil {
				tc.change(t, dir)
			}
			err = back.Verify(dir)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			if !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify: %v; want ErrCorrupt naming %q", err, tc.want)
			}
		})
	}
}

func TestSealDirModes(t *testing.T) {
	dir, files := makeImageDir(t)
	if _, err := snapshot.SealDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unsealAll(dir) })
	for _, p := range []string{".", "sub"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || fi.Mode().Perm() != 0o500 {
			t.Errorf("%s: mode %v, %v; want 0500", p, fi.Mode().Perm(), err)
		}
	}
	for name := range files {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o400 {
			t.Errorf("%s: mode %v, %v; want 0400", name, fi.Mode().Perm(), err)
		}
	}
	if err := (snapshot.Seal{}).Verify(dir); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("empty seal: %v", err)
	}
	withLink := t.TempDir()
	if err := os.Symlink("x", filepath.Join(withLink, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.SealDir(withLink); err == nil {
		t.Error("sealed a directory holding a symlink")
	}
	if fi, err := os.Stat(withLink); err != nil || fi.Mode().Perm() == 0o500 {
		t.Errorf("a refused directory was made read-only: %v, %v", fi.Mode(), err)
	}
}

// unsealAll lets t.TempDir's cleanup remove a sealed tree as non-root.
func unsealAll(dir string) {
	for _, d := range []string{dir, dir + ".old"} {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
		if d != dir {
			os.RemoveAll(d)
		}
	}
}

// BenchmarkSeal compares what checking a ~60 MB image directory costs:
// hashing it again versus verifying its seal.
//
//	go test ./snapshot -run '^$' -bench Seal -benchtime 20x
func BenchmarkSeal(b *testing.B) {
	dir := b.TempDir()
	const files, size = 30, 2 << 20
	for i := range files {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("pages-%d.img", i)), randomBytes(b, size), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { unsealAll(dir) })
	start := time.Now()
	seal, err := snapshot.SealDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("SealDir of %d files, %d MB: %v", files, files*size>>20, time.Since(start))
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(files * size)
		for b.Loop() {
			h := sha256.New()
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				f, err := os.Open(filepath.Join(dir, e.Name()))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(h, f)
				f.Close()
			}
		}
	})
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			if err := seal.Verify(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
}
