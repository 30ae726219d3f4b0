package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

const (
	// FunctionPath is where the function's directory appears, read-only,
	// and where it runs; OpenFaaS templates use the same home.
	FunctionPath = "/home/app"
	// SupervisorDir is a directory only root can enter, on a tmpfs of its
	// own, for the agent's and CRIU's working files.
	SupervisorDir = "/.pronghorn"
	// DefaultTmpBytes bounds /tmp and /dev/shm when the spec does not; the
	// pages count against the worker's memory limit too.
	DefaultTmpBytes = 128 << 20
)

// etcAllowed are the host's /etc entries a function sees (read-only): what
// runtimes, the dynamic loader, TLS and name resolution read. The host's
// users, shadow file, keys and service configuration stay out; passwd,
// group, hosts, hostname and resolv.conf are written for the worker.
var etcAllowed = []string{
	"alternatives", "ca-certificates", "ca-certificates.conf", "ssl", "ld.so.cache", "ld.so.conf",
	"ld.so.conf.d", "localtime", "timezone", "nsswitch.conf", "host.conf", "gai.conf", "protocols",
	"services", "networks", "mime.types", "os-release", "debian_version", "java-*", "python3*", "pypy*",
}

// Spec describes a worker's private root.
type Spec struct {
	// Dir is an empty directory of the host on which the root is built;
	// after Enter it is the worker's "/". Only the worker's mount namespace
	// ever sees anything mounted there.
	Dir string
	// FunctionDir is the host directory shown read-only at FunctionPath.
	FunctionDir string
	// Identity names the function's user in the worker's /etc/passwd.
	Identity Identity
	// TmpBytes bounds /tmp and /dev/shm; 0 means DefaultTmpBytes.
	TmpBytes int64
	// ResolvConf is the worker's /etc/resolv.conf; nil copies the host's.
	ResolvConf []byte
	// Hostname goes into /etc/hostname and /etc/hosts.
	Hostname string
	// ReadOnly are further host paths shown read-only at the same path,
	// such as a CRIU installed outside /usr.
	ReadOnly []string
	// Hidden are host paths that must not show even when they lie under a
	// read-only path (the provider's data directory, say): an empty,
	// read-only tmpfs covers them.
	Hidden []string
	// CRIUKerndat seeds /run/criu.kdat (see CRIUKerndat).
	CRIUKerndat []byte
	// Tmpfs are further writable tmpfs mounts, by path inside the root, with
	// their mount options (mode, size): the root itself ends up read-only.
	Tmpfs map[string]string
}

// Enter builds the root described by s and makes it the calling process's
// root with pivot_root, so unmounting cannot uncover the host. The caller
// must be root in a mount namespace of its own whose mounts are private,
// and gets a read-only "/" with these writable mounts: /tmp, /dev/shm
// (sized), SupervisorDir (root only). A fresh /proc for the caller's pid
// namespace is mounted with hidepid=invisible, so the function sees only
// its own processes.
func (s Spec) Enter() error {
	if err := s.build(); err != nil {
		return err
	}
	return pivot(s.Dir)
}

func (s Spec) build() error {
	tmpBytes := s.TmpBytes
	if tmpBytes <= 0 {
		tmpBytes = DefaultTmpBytes
	}
	r := s.Dir
	if err := mountFS("tmpfs", r, "mode=0755,size=8m", unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	if err := baseSystem(r); err != nil {
		return err
	}
	for _, p := range s.ReadOnly {
		if err := bindReadOnly(p, filepath.Join(r, p)); err != nil {
			return err
		}
	}
	if err := s.etc(filepath.Join(r, "etc")); err != nil {
		return err
	}
	if err := bindReadOnly(s.FunctionDir, filepath.Join(r, FunctionPath)); err != nil {
		return fmt.Errorf("function directory: %w", err)
	}
	sized := fmt.Sprintf("mode=1777,size=%d", tmpBytes)
	if err := mountFS("tmpfs", filepath.Join(r, "tmp"), sized, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	if err := devices(filepath.Join(r, "dev"), sized); err != nil {
		return err
	}
	if err := mountFS("proc", filepath.Join(r, "proc"), "hidepid=invisible", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC); err != nil {
		return err
	}
	// Executable: the agent keeps helper scripts there. The function cannot
	// enter it at all.
	if err := mountFS("tmpfs", filepath.Join(r, SupervisorDir), "mode=0700,size=64m", unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	if err := runDir(filepath.Join(r, "run"), s.CRIUKerndat); err != nil {
		return err
	}
	for p, opts := range s.Tmpfs {
		if err := mountFS("tmpfs", filepath.Join(r, p), opts, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC); err != nil {
			return err
		}
	}
	for _, p := range s.Hidden {
		if err := hide(r, p); err != nil {
			return err
		}
	}
	return nil
}

// baseSystem shows the host's /usr read-only, with the usual top-level
// links (or, on hosts without merged /usr, read-only binds) beside it.
func baseSystem(r string) error {
	if err := bindReadOnly("/usr", filepath.Join(r, "usr")); err != nil {
		return err
	}
	for _, top := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		fi, err := os.Lstat(top)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(top)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, filepath.Join(r, top)); err != nil {
				return err
			}
		default:
			if err := bindReadOnly(top, filepath.Join(r, top)); err != nil {
				return err
			}
		}
	}
	return nil
}

// etc fills the worker's /etc: the allowed host entries read-only, and the
// files that describe the worker itself.
func (s Spec) etc(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, pattern := range etcAllowed {
		matches, err := filepath.Glob(filepath.Join("/etc", pattern))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := etcEntry(m, filepath.Join(dir, filepath.Base(m))); err != nil {
				return err
			}
		}
	}
	resolv := s.ResolvConf
	if resolv == nil {
		resolv, _ = os.ReadFile("/etc/resolv.conf")
	}
	host := s.Hostname
	if host == "" {
		host = "localhost"
	}
	files := map[string]string{
		"passwd": fmt.Sprintf("root:x:0:0:root:/root:/usr/sbin/nologin\napp:x:%d:%d:app:%s:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
			s.Identity.UID, s.Identity.GID, FunctionPath),
		"group":       fmt.Sprintf("root:x:0:\napp:x:%d:\nnogroup:x:65534:\n", s.Identity.GID),
		"hosts":       fmt.Sprintf("127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", host),
		"hostname":    host + "\n",
		"resolv.conf": string(resolv),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// etcEntry shows the host's /etc entry src at target: a symlink as the same
// symlink, anything else as a read-only bind. A bind would follow the link,
// and ICU, say, learns the time zone's name only from where /etc/localtime
// points: given a plain file it compares it with every file under
// /usr/share/zoneinfo, which cost Node 7 ms on its first request.
func etcEntry(src, target string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return bindReadOnly(src, target)
	}
	link, err := os.Readlink(src)
	if err != nil {
		return err
	}
	return os.Symlink(link, target)
}

// devices makes a /dev with only the nodes a program expects.
func devices(dir, shmOpts string) error {
	if err := mountFS("tmpfs", dir, "mode=0755,size=64k", unix.MS_NOSUID|unix.MS_NOEXEC); err != nil {
		return err
	}
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, n := range nodes {
		if err := unix.Mknod(filepath.Join(dir, n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("/dev/%s: %w", n.name, err)
		}
	}
	// CRIU, which runs in this mount namespace as root, probes the tun
	// driver at every start; only root may open the node.
	if err := os.Mkdir(filepath.Join(dir, "net"), 0o755); err != nil {
		return err
	}
	if err := unix.Mknod(filepath.Join(dir, "net", "tun"), unix.S_IFCHR|0o600, int(unix.Mkdev(10, 200))); err != nil {
		return fmt.Errorf("/dev/net/tun: %w", err)
	}
	links := map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return mountFS("tmpfs", filepath.Join(dir, "shm"), shmOpts, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

// runDir makes a /run that only root can write, seeded with CRIU's kernel
// cache.
func runDir(dir string, kerndat []byte) error {
	if err := mountFS("tmpfs", dir, "mode=0755,size=1m", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC); err != nil {
		return err
	}
	if kerndat == nil {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, "criu.kdat"), kerndat, 0o600)
}

// hide covers host path p inside root r, if it shows there at all.
func hide(r, p string) error {
	target := filepath.Join(r, p)
	fi, err := os.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return bindReadOnly("/dev/null", target) // /dev/null of the host: an empty file
	}
	return mountFS("tmpfs", target, "mode=0,size=4k", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

// mountFS mounts a fresh filesystem of type fstype at target, creating it.
func mountFS(fstype, target, data string, flags uintptr) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(fstype, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

// bindReadOnly shows src at target, read-only, without setuid or devices.
// Mounts below src stay out: the bind is not recursive.
func bindReadOnly(src, target string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("read-only bind: %w", err)
	}
	if fi.IsDir() {
		err = os.MkdirAll(target, 0o755)
	} else if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil {
		err = createEmpty(target)
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	// A bind takes the source's flags; read-only needs a remount, which
	// must keep the flags the source already has.
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	var st unix.Statfs_t
	if err := unix.Statfs(src, &st); err == nil {
		if st.Flags&unix.ST_NOEXEC != 0 {
			flags |= unix.MS_NOEXEC
		}
		if st.Flags&unix.ST_NOATIME != 0 {
			flags |= unix.MS_NOATIME
		}
		if st.Flags&unix.ST_RELATIME != 0 {
			flags |= unix.MS_RELATIME
		}
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", target, err)
	}
	return nil
}

func createEmpty(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// pivot makes root the process's "/", detaches the old root and makes the
// root's own tmpfs read-only.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root on top of the new one; the
	// detach below removes it, with no directory needed to park it in.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("remount / read-only: %w", err)
	}
	return nil
}
