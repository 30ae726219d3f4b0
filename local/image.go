package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// resolveImage maps a deploy request's image to a function directory: an
// absolute path, or a name under functionsDir with any registry prefix and
// tag dropped, so "ghcr.io/me/counter-pypy:0.1" finds "counter-pypy".
func resolveImage(functionsDir, image string) (string, error) {
	if image == "" {
		return "", fmt.Errorf("image is required: %w", errdefs.ErrInvalid)
	}
	var candidates []string
	if filepath.IsAbs(image) {
		candidates = []string{filepath.Clean(image)}
	} else {
		name := image
		if i := strings.LastIndex(name, "@"); i >= 0 {
			name = name[:i]
		}
		if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
			name = name[:i]
		}
		if strings.Contains(name, "..") {
			return "", fmt.Errorf("image %q: %w", image, errdefs.ErrInvalid)
		}
		candidates = []string{filepath.Join(functionsDir, name), filepath.Join(functionsDir, filepath.Base(name))}
	}
	for _, dir := range candidates {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir, nil
		}
	}
	return "", fmt.Errorf("image %q: no function directory at %s: %w", image, candidates[0], errdefs.ErrInvalid)
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
