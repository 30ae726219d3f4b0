package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/sandbox"
)

// SandboxConfig is how the provider asks for a confined function.
type SandboxConfig struct {
	// Root is an empty host directory the worker's root is built on.
	Root     string           `json:"root"`
	Identity sandbox.Identity `json:"identity"`
	TmpBytes int64            `json:"tmpBytes,omitempty"`
	// ResolvConf is the worker's /etc/resolv.conf; nil copies the host's.
	ResolvConf []byte   `json:"resolvConf,omitempty"`
	ReadOnly   []string `json:"readOnly,omitempty"`
	Hidden     []string `json:"hidden,omitempty"`
	// CRIUKerndat is criu's cache of kernel facts (sandbox.CRIUKerndat),
	// put into the worker's /run: criu then skips its probes, which take
	// tens of milliseconds at every dump and restore.
	CRIUKerndat []byte `json:"criuKerndat,omitempty"`
	// ImagesDir is the host directory holding the CRIU images the provider
	// names, for restores and dumps. Nothing of the host shows inside the
	// root, so the agent keeps this one directory open across pivot_root
	// and reaches it through /proc/self/fd.
	ImagesDir string `json:"imagesDir"`
}

func (s *SandboxConfig) validate(isolated bool) error {
	switch {
	case !isolated:
		return errors.New("agent config: a sandbox needs an isolated worker")
	case !filepath.IsAbs(s.Root) || !filepath.IsAbs(s.ImagesDir):
		return fmt.Errorf("agent config: sandbox root %q and images dir %q must be absolute", s.Root, s.ImagesDir)
	}
	return s.Identity.Validate()
}

// confinement is an entered sandbox.
type confinement struct {
	imagesDir string   // the host path the provider names images by
	images    *os.File // O_PATH handle on imagesDir, opened before pivot_root
	// dumpCRIU runs criu for dumps; see criuAsFunction.
	dumpCRIU string
}

// criuAsFunction writes a wrapper that runs criu with the function's uid
// and gid as its real ids, keeping root's effective ids and capabilities.
// Every dump reads the function's rlimits, and reading another user's
// rlimits takes CAP_SYS_RESOURCE, which a host (a VM, a container) may
// withhold even from root; with matching real ids the kernel asks for no
// capability. A shell drops its effective uid to the real one unless
// started with -p, so a criu that is itself a shell script runs under
// sh -p. Without setpriv, dumps run criu directly.
//
// criu decides it runs as root from its effective uid, and skips its
// kernel probes when /run holds their cache (sandbox.CRIUKerndat), which matters:
// some probes fail with a real uid that is not root.
func criuAsFunction(criuPath string, id sandbox.Identity) (string, error) {
	if _, err := os.Stat(sandbox.Setpriv); err != nil {
		return criuPath, nil
	}
	run := fmt.Sprintf("'%s'", criuPath)
	if isScript(criuPath) {
		run = "/bin/sh -p " + run
	}
	wrapper := filepath.Join(sandbox.SupervisorDir, "criu-dump")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --ruid=%d --rgid=%d --keep-groups -- %s \"$@\"\n", sandbox.Setpriv, id.UID, id.GID, run)
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		return "", fmt.Errorf("sandbox: criu wrapper: %w", err)
	}
	return wrapper, nil
}

func isScript(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [2]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "#!"
}

// enterSandbox builds the worker's root, with the secrets tmpfs, and
// pivots into it. The agent's sockets must already be listening: their
// host paths are gone afterwards.
func enterSandbox(cfg SandboxConfig, secretsDir, functionDir, criuPath string) (*confinement, error) {
	if strings.ContainsAny(criuPath, "'\n") {
		return nil, fmt.Errorf("sandbox: criu path %q: quotes and newlines are not supported", criuPath)
	}
	images, err := os.OpenFile(cfg.ImagesDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: images dir: %w", err)
	}
	spec := sandbox.Spec{
		Dir: cfg.Root, FunctionDir: functionDir, Identity: cfg.Identity, TmpBytes: cfg.TmpBytes,
		ResolvConf: cfg.ResolvConf, ReadOnly: cfg.ReadOnly, Hidden: cfg.Hidden, CRIUKerndat: cfg.CRIUKerndat,
		Tmpfs: map[string]string{secretsDir: fmt.Sprintf("mode=0755,size=%d", secretsTmpfsBytes)},
	}
	if err := spec.Enter(); err != nil {
		images.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	dumpCRIU, err := criuAsFunction(criuPath, cfg.Identity)
	if err != nil {
		images.Close()
		return nil, err
	}
	return &confinement{imagesDir: cfg.ImagesDir, images: images, dumpCRIU: dumpCRIU}, nil
}

// imagesPath translates a host path under ImagesDir into one the agent
// (and the criu it starts) can open from inside the root.
func (c *confinement) imagesPath(hostPath string) (string, error) {
	rel, err := filepath.Rel(c.imagesDir, filepath.Clean(hostPath))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s is outside the worker's images directory %s", hostPath, c.imagesDir)
	}
	return filepath.Join(fmt.Sprintf("/proc/self/fd/%d", c.images.Fd()), rel), nil
}
