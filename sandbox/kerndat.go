package sandbox

import (
	"context"
	"fmt"
	"os/exec"
)

// CRIUKerndat runs criu once so that it probes the kernel, and returns the
// cache it keeps of what it found. criu keeps that cache only on a tmpfs
// /run, which many hosts do not have, so the probe runs in a mount
// namespace of its own with a fresh /run; it takes tens of milliseconds,
// which every dump and restore would pay without the cache.
func CRIUKerndat(ctx context.Context, criuPath string) ([]byte, error) {
	const script = `mount -t tmpfs none /run && "$0" check --feature mem_dirty_track >/dev/null 2>&1; cat /run/criu.kdat`
	out, err := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, criuPath).Output()
	if err != nil {
		return nil, fmt.Errorf("criu kernel cache: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("criu kernel cache: %s wrote none", criuPath)
	}
	return out, nil
}
