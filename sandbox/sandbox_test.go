package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// roleEnv makes the test binary a worker: PID 1 of fresh namespaces that
// enters the Spec in the variable and runs a shell in it as the function.
const roleEnv = "PRONGHORN_SANDBOX_TEST_SPEC"

// ptraceEnv makes the test binary, run as a confined function, try to
// ptrace its supervisor and print the error.
const ptraceEnv = "PRONGHORN_SANDBOX_TEST_PTRACE"

func TestMain(m *testing.M) {
	if os.Getenv(ptraceEnv) != "" {
		fmt.Println(unix.PtraceAttach(1))
		os.Exit(0)
	}
	if spec := os.Getenv(roleEnv); spec != "" {
		if err := runWorker(spec); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type workerSpec struct {
	Spec  Spec
	Probe string
}

func runWorker(raw string) error {
	var ws workerSpec
	if err := json.Unmarshal([]byte(raw), &ws); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := ws.Spec.Enter(); err != nil {
		return err
	}
	cmd := Command(ws.Spec.Identity, "/bin/sh", []string{"sh", "-c", ws.Probe})
	cmd.Dir = FunctionPath
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/tmp"}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := Start(cmd); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return err
	}
	return unfiltered()
}

// unfiltered checks that no thread of this process, the supervisor, kept
// the function's seccomp filter: the thread that started it must be gone.
func unfiltered() error {
	var filtered []string
	for range 100 {
		filtered = filtered[:0]
		tasks, _ := filepath.Glob("/proc/self/task/*/status")
		for _, task := range tasks {
			b, err := os.ReadFile(task)
			if err == nil && strings.Contains(string(b), "\nSeccomp:\t2") {
				filtered = append(filtered, task)
			}
		}
		if len(filtered) == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("supervisor threads under the function's filter: %v", filtered)
}

func TestPolicyAssembles(t *testing.T) {
	p := Policy()
	if _, err := p.Assemble(); err != nil {
		t.Fatalf("the policy names a syscall this architecture does not have, or is malformed: %v", err)
	}
}

func TestIdentityValidate(t *testing.T) {
	for _, tc := range []struct {
		id Identity
		ok bool
	}{
		{Identity{1000, 1000}, true},
		{Identity{0, 1000}, false},
		{Identity{1000, 0}, false},
		{Identity{-1, 5}, false},
		{Identity{1 << 31, 5}, false},
	} {
		if err := tc.id.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: err = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

// TestConfinedFunction runs probes as a sandboxed function and checks what
// each can and cannot do.
func TestConfinedFunction(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds a root in a new mount namespace")
	}
	fnDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(fnDir, "handler.txt"), []byte("code"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fnDir, "probe"), self, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(fnDir, 0o755)
	// The provider's data dir, under a directory shown read-only; not under
	// /tmp, which the worker's own /tmp covers anyway.
	shared, err := os.MkdirTemp("/var/tmp", "sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o755)
	hiddenDir := filepath.Join(shared, "data")
	if err := os.Mkdir(hiddenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(shared, "runtime.txt"), filepath.Join(hiddenDir, "state.db")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := Spec{FunctionDir: fnDir, Identity: Identity{UID: 1000, GID: 1000}, TmpBytes: 1 << 20,
		ResolvConf: []byte("nameserver 192.0.2.53\n"), Hostname: "worker-test",
		ReadOnly: []string{shared}, Hidden: []string{hiddenDir}}

	for _, tc := range []struct {
		name, probe, want string
	}{
		{"runs unprivileged", "id -u; id -g", "1000\n1000\n"},
		{"no capabilities", "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status | awk '{print $2}' | sort -u", "0000000000000000\n"},
		{"no_new_privs and seccomp", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | awk '{print $2}'", "1\n2\n"},
		{"cannot read the host's shadow file", "cat /etc/shadow 2>/dev/null || echo denied", "denied\n"},
		{"the host's /root and /home are not there", "ls /root /home/* 2>&1 | grep -c 'No such file'; ls /home", "1\napp\n"},
		{"function directory read-only at /home/app", "cat handler.txt; echo; touch x 2>/dev/null || echo read-only", "code\nread-only\n"},
		{"the supervisor's files are out of reach", "ls /.pronghorn 2>/dev/null || echo denied", "denied\n"},
		{"root file system read-only", "touch /etc/x /usr/x /x 2>/dev/null || echo read-only", "read-only\n"},
		{"/tmp writable and sized", "dd if=/dev/zero of=/tmp/f bs=64k count=32 2>/dev/null || echo full", "full\n"},
		{"cannot mount", "mkdir -p /tmp/m; mount -t tmpfs x /tmp/m 2>/dev/null || echo refused", "refused\n"},
		{"cannot unshare namespaces", "unshare -r true 2>/dev/null || unshare -m true 2>/dev/null || echo refused", "refused\n"},
		{"cannot open the tun driver CRIU probes", "(exec 3<>/dev/net/tun) 2>/dev/null || echo denied", "denied\n"},
		{"cannot ptrace its supervisor", ptraceEnv + "=1 ./probe", "operation not permitted\n"},
		{"cannot signal its supervisor (PID 1)", "kill -0 1 2>/dev/null || echo denied", "denied\n"},
		{"sees only its own processes", "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n", "1\n"},
		{"worker's own /etc files", "cat /etc/resolv.conf /etc/hostname; grep ^app /etc/passwd", "nameserver 192.0.2.53\nworker-test\napp:x:1000:1000:app:/home/app:/usr/sbin/nologin\n"},
		{"host's /etc links stay links", "readlink /etc/localtime; true", hostLink("/etc/localtime")},
		{"only the usual devices", "ls /dev | tr '\\n' ' '", "fd full net null random shm stderr stdin stdout tty urandom zero "},
		{"extra read-only path shows, data dir in it does not", "cat " + shared + "/runtime.txt; echo; ls -A " + hiddenDir + " | wc -l; cat " + hiddenDir + "/state.db 2>/dev/null || echo denied",
			"x\n0\ndenied\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec
			s.Dir = t.TempDir()
			out := runConfined(t, workerSpec{Spec: s, Probe: tc.probe})
			if out != tc.want {
				t.Errorf("probe %q:\ngot  %q\nwant %q", tc.probe, out, tc.want)
			}
		})
	}
}

// hostLink is what readlink prints for path on the host: nothing for a
// file that is not a symlink.
func hostLink(path string) string {
	target, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return target + "\n"
}

func runConfined(t *testing.T, ws workerSpec) string {
	t.Helper()
	raw, err := json.Marshal(ws)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("worker: %v\nstdout: %s\nstderr: %s", err, stdout.String(), strings.TrimSpace(stderr.String()))
	}
	return stdout.String()
}
