package agent

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// privateMounts cuts the fresh mount namespace the provider cloned for this
// agent off from the host's: nothing mounted here (proc, the secrets
// tmpfs, a sandbox's root) leaks back.
func privateMounts() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	return nil
}

// setupWorker prepares the worker's namespaces once the agent listens:
// the sandbox's root (or, unconfined, a /proc of this pid namespace, which
// CRIU and ns_last_pid need), loopback, and the secrets on a tmpfs.
func (a *Agent) setupWorker() error {
	if sb := a.cfg.Sandbox; sb != nil {
		c, err := enterSandbox(*sb, a.cfg.SecretsDir, a.cfg.Dir, (&snapshot.CRIU{Path: a.cfg.CRIUPath}).Binary())
		if err != nil {
			return err
		}
		a.confined = c
	} else if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	if a.confined != nil {
		return a.secrets.replace(a.cfg.Secrets)
	}
	return mountSecrets(a.secrets, a.cfg.Secrets)
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: set up: %w", err)
	}
	return nil
}

// mountSecrets puts the secrets on a tmpfs of the worker's own, so they
// never touch the host's disk and vanish with the worker.
func mountSecrets(secrets *secretFiles, values map[string][]byte) error {
	if err := validateSecrets(values); err != nil {
		return err
	}
	if err := os.MkdirAll(secrets.dir, 0o755); err != nil {
		return fmt.Errorf("secrets dir: %w", err)
	}
	opts := fmt.Sprintf("mode=0755,size=%d", secretsTmpfsBytes)
	if err := unix.Mount("tmpfs", secrets.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount secrets tmpfs: %w", err)
	}
	return secrets.replace(values)
}

// pinNextPID makes the next process in this pid namespace get PID last+1.
// The agent's own helpers (criu) take the low PIDs of a fresh namespace, so a
// function restored from a snapshot would collide with them unless every
// function runs at the same high PID.
func pinNextPID(last int) error {
	return os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(fmt.Sprint(last)), 0o644)
}
