package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// declarationFile is a function directory's own description of how to run it,
// used when the deploy request has no envProcess.
const declarationFile = "function.json"

// Declaration is the content of a function directory's function.json.
type Declaration struct {
	// Process is the fprocess, e.g. "pypy3 index.py".
	Process string `json:"fprocess"`
	// Runtime names the JIT runtime ("pypy", "jvm", "node"), for snapshots.
	Runtime string `json:"runtime,omitempty"`
	// Env is the function's base environment, as an image's ENV would be;
	// the deploy request's envVars override it.
	Env map[string]string `json:"env,omitempty"`
}

// resolveImage maps a deploy request's image to a function directory and
// returns its real path. A name is looked up under functionsDir with any
// registry prefix, tag and digest dropped, so "ghcr.io/me/counter-pypy:0.1"
// finds "counter-pypy"; an absolute path is taken as it is. Either way the
// directory, symlinks resolved, must lie strictly under functionsDir, or be
// one of allowed or lie under one: the image comes from whoever may call the
// API, and whatever directory it names is run as the function. The real
// path is returned so that what runs is what was checked, even if a
// symlink on the way changes later.
func resolveImage(functionsDir string, allowed []string, image string) (string, error) {
	if image == "" {
		return "", fmt.Errorf("image is required: %w", errdefs.ErrInvalid)
	}
	roots := newFunctionRoots(functionsDir, allowed)
	var candidates []string
	if filepath.IsAbs(image) {
		dir := filepath.Clean(image)
		// Checked before the path is touched, so that answers do not tell
		// which paths exist elsewhere on the machine.
		if !roots.admit(dir) {
			return "", fmt.Errorf("image %q: %s is outside the functions dir: %w", image, dir, errdefs.ErrInvalid)
		}
		candidates = []string{dir}
	} else {
		name := imageName(image)
		if name == "" || filepath.Clean(name) == "." {
			return "", fmt.Errorf("image %q names no function directory: %w", image, errdefs.ErrInvalid)
		}
		if slices.Contains(strings.Split(name, "/"), "..") {
			return "", fmt.Errorf("image %q: a function name may not contain \"..\": %w", image, errdefs.ErrInvalid)
		}
		candidates = []string{filepath.Join(functionsDir, name), filepath.Join(functionsDir, filepath.Base(name))}
	}
	for _, dir := range candidates {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", fmt.Errorf("image %q: %v: %w", image, err, errdefs.ErrInvalid)
		}
		if !roots.admit(real) {
			return "", fmt.Errorf("image %q: %s resolves to %s, outside the functions dir: %w", image, dir, real, errdefs.ErrInvalid)
		}
		return real, nil
	}
	return "", fmt.Errorf("image %q: no function directory at %s: %w", image, candidates[0], errdefs.ErrInvalid)
}

// imageName drops an image reference's digest and tag: "ghcr.io/me/fn:0.1"
// becomes "ghcr.io/me/fn".
func imageName(image string) string {
	name := image
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return name
}

// functionRoots are the directories a function directory may come from,
// each both as configured and with its symlinks resolved, so a path spelled
// either way is recognised.
type functionRoots struct {
	// functions holds function directories below it, not itself one.
	functions []string
	// allowed are function directories the operator named, and parents of more.
	allowed []string
}

func newFunctionRoots(functionsDir string, allowed []string) functionRoots {
	forms := func(dir string) []string {
		dir = filepath.Clean(dir)
		if real, err := filepath.EvalSymlinks(dir); err == nil && real != dir {
			return []string{dir, real}
		}
		return []string{dir}
	}
	r := functionRoots{functions: forms(functionsDir)}
	for _, d := range allowed {
		if d != "" {
			r.allowed = append(r.allowed, forms(d)...)
		}
	}
	return r
}

// admit reports whether the clean absolute path dir may be a function directory.
func (r functionRoots) admit(dir string) bool {
	for _, root := range r.functions {
		if rel, ok := under(root, dir); ok && rel != "." {
			return true
		}
	}
	for _, root := range r.allowed {
		if _, ok := under(root, dir); ok {
			return true
		}
	}
	return false
}

// under reports whether path is root or lies below it, and path relative to root.
func under(root, path string) (string, bool) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", false
	}
	return rel, true
}

// readDeclaration reads dir's function.json; a directory without one is fine
// when the deploy request names its process.
func readDeclaration(dir string) (Declaration, error) {
	var d Declaration
	raw, err := os.ReadFile(filepath.Join(dir, declarationFile))
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("read %s: %w", declarationFile, err)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("%s in %s: %v: %w", declarationFile, dir, err, errdefs.ErrInvalid)
	}
	return d, nil
}
