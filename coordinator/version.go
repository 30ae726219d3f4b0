package coordinator

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/openfaas/faas-provider/types"
)

// A snapshot is only valid for the exact process it was taken of: restoring
// a snapshot of the old code after an update would silently serve the old
// function. So every worker is started under a version, a digest of what its
// process is built from, and restores only snapshots of that version. The
// engine keeps one entry per version ("<namespace>/<name>@<version>").

// VersionInputs is everything a worker's process sees at start that a
// snapshot would otherwise freeze.
type VersionInputs struct {
	// Dir is the function directory (local mode); Image the image
	// reference (Kubernetes). Either or both may be set.
	Dir      string
	Image    string
	Process  string
	Runtime  string
	Env      map[string]string
	Secrets  map[string][]byte
	Limits   *types.FunctionResources
	Requests *types.FunctionResources
	ReadOnly bool
}

// maxDigestFiles bounds the walk of a function directory: a directory that
// large is a deploy mistake, not a function.
const maxDigestFiles = 100_000

// digester computes function versions, hashing a directory's contents only
// when a cheap stat walk says something in it changed.
type digester struct {
	mu   sync.Mutex
	dirs map[string]dirDigest
}

type dirDigest struct {
	fingerprint [sha256.Size]byte // of names, sizes, modes, mtimes, ctimes, inodes
	content     [sha256.Size]byte // of names, modes and contents
}

func newDigester() *digester { return &digester{dirs: map[string]dirDigest{}} }

// version returns the short digest naming in's version.
func (d *digester) version(in VersionInputs) (string, error) {
	var dir [sha256.Size]byte
	if in.Dir != "" {
		var err error
		if dir, err = d.dirContent(in.Dir); err != nil {
			return "", err
		}
	}
	h := sha256.New()
	field := func(s string) {
		_ = binary.Write(h, binary.LittleEndian, uint64(len(s)))
		io.WriteString(h, s)
	}
	field("pronghorn-version-1")
	h.Write(dir[:])
	field(in.Image)
	field(in.Process)
	field(in.Runtime)
	for _, k := range sortedKeys(in.Env) {
		field(k)
		field(in.Env[k])
	}
	field("secrets")
	for _, k := range sortedKeys(in.Secrets) {
		sum := sha256.Sum256(in.Secrets[k])
		field(k)
		h.Write(sum[:])
	}
	for _, r := range []*types.FunctionResources{in.Limits, in.Requests} {
		if r == nil {
			field("-")
			continue
		}
		field(r.Memory)
		field(r.CPU)
	}
	field(fmt.Sprint(in.ReadOnly))
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// dirContent returns the digest of dir's contents, rehashing them only when
// the stat fingerprint differs from the last one seen. ctime is part of the
// fingerprint, and no write to a file leaves it unchanged.
func (d *digester) dirContent(dir string) ([sha256.Size]byte, error) {
	fp, err := walkDir(dir, nil)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	d.mu.Lock()
	cached, ok := d.dirs[dir]
	d.mu.Unlock()
	if ok && cached.fingerprint == fp {
		return cached.content, nil
	}
	content, err := walkDir(dir, sha256.New())
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	d.mu.Lock()
	d.dirs[dir] = dirDigest{fingerprint: fp, content: content}
	d.mu.Unlock()
	return content, nil
}

// walkDir digests dir in lexical order: with contents nil, the metadata
// fingerprint; otherwise every regular file's content and every symlink's
// target, hashed into contents.
func walkDir(dir string, contents hash.Hash) ([sha256.Size]byte, error) {
	h := sha256.New()
	if contents != nil {
		h = contents
	}
	n := 0
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n > maxDigestFiles {
			return fmt.Errorf("more than %d files", maxDigestFiles)
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %o\n", rel, info.Mode())
		if contents == nil {
			st, _ := info.Sys().(*syscall.Stat_t)
			if st != nil {
				fmt.Fprintf(h, "%d %d %d.%d %d.%d\n", st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
			}
			return nil
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "-> %q\n", target)
		case info.Mode().IsRegular():
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("digest function directory %s: %w", dir, err)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// EngineKey names one version of a function in the engine.
func EngineKey(fnKey, version string) string { return fnKey + "@" + version }

// versionOf returns the version part of an engine key of fnKey, and whether
// key belongs to fnKey at all (the bare fnKey is an unversioned key from an
// older provider).
func versionOf(fnKey, key string) (string, bool) {
	if key == fnKey {
		return "", true
	}
	prefix := fnKey + "@"
	v, ok := strings.CutPrefix(key, prefix)
	if !ok || v == "" {
		return "", false
	}
	return v, true
}

// fnKeyOf returns the function part of an engine key.
func fnKeyOf(key string) string {
	fn, _, _ := strings.Cut(key, "@")
	return fn
}
