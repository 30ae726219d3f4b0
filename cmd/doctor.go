package cmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// check is one precondition of the local mode; required ones fail the run.
type check struct {
	name     string
	required bool
	run      func(ctx context.Context) (string, error)
}

func newDoctorCommand() *cobra.Command {
	var opts snapshotOptions
	var dataDir string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine for local mode: root, namespaces, CRIU, runtimes, snapshot store",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ok := runChecks(cmd.Context(), os.Stdout, doctorChecks(&opts, dataDir))
			if !ok {
				return fmt.Errorf("a required check failed")
			}
			return nil
		},
	}
	envString(cmd.Flags(), &dataDir, "data-dir", "data_dir", "/var/lib/pronghorn", "state directory (the dir store lives under it)")
	errs := opts.flags(cmd.Flags())
	cmd.PreRunE = func(*cobra.Command, []string) error { return errors.Join(errs...) }
	return cmd
}

func doctorChecks(opts *snapshotOptions, dataDir string) []check {
	return []check{
		{"root", true, func(context.Context) (string, error) {
			if os.Geteuid() != 0 {
				return "", fmt.Errorf("uid %d: workers run in their own namespaces, which needs root", os.Geteuid())
			}
			if !hasCapSysAdmin() {
				return "", fmt.Errorf("root without CAP_SYS_ADMIN")
			}
			return "uid 0 with CAP_SYS_ADMIN", nil
		}},
		{"kernel", false, func(context.Context) (string, error) {
			var u unix.Utsname
			if err := unix.Uname(&u); err != nil {
				return "", err
			}
			return unix.ByteSliceToString(u.Release[:]), nil
		}},
		{"namespaces", true, func(ctx context.Context) (string, error) {
			c := exec.CommandContext(ctx, "/bin/true")
			c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC}
			if err := c.Run(); err != nil {
				return "", fmt.Errorf("cannot create pid/net/mount namespaces: %w", err)
			}
			return "pid, net, mount, uts, ipc", nil
		}},
		{"criu", false, func(ctx context.Context) (string, error) {
			c := &snapshot.CRIU{Path: opts.criu}
			v, err := c.Version(ctx)
			if err != nil {
				return "", fmt.Errorf("%s: %w (install with scripts/install-criu.sh; without it every worker starts cold)", opts.criu, err)
			}
			if err := c.Check(ctx); err != nil {
				return "", fmt.Errorf("criu %s: criu check failed: %w", criuVersion(v), err)
			}
			return fmt.Sprintf("%s at %s, criu check passed", criuVersion(v), opts.criu), nil
		}},
		runtimeCheck("pypy3", "--version"),
		runtimeCheck("java", "-version"),
		runtimeCheck("node", "--version"),
		{"snapshot store", false, func(ctx context.Context) (string, error) {
			store, err := opts.openStore(ctx, dataDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				return "", err
			}
			if store == nil {
				return "none: snapshots off", nil
			}
			if _, lazy := store.(*snapshot.LazyStore); lazy {
				return "", fmt.Errorf("%s store not reachable", opts.store)
			}
			if _, err := store.List(ctx, "doctor/"); err != nil {
				return "", fmt.Errorf("%s store: %w", opts.store, err)
			}
			return opts.store + " store reachable", nil
		}},
	}
}

func criuVersion(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

func runtimeCheck(bin, versionFlag string) check {
	return check{bin, false, func(ctx context.Context) (string, error) {
		path, err := exec.LookPath(bin)
		if err != nil {
			return "", fmt.Errorf("not installed (scripts/setup.sh installs it)")
		}
		out, err := exec.CommandContext(ctx, path, versionFlag).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", path, versionFlag, err)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return first, nil
	}}
}

func runChecks(ctx context.Context, w io.Writer, checks []check) bool {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	allOK := true
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		detail, err := c.run(cctx)
		cancel()
		verdict := "ok"
		if err != nil {
			verdict, detail = "warn", err.Error()
			if c.required {
				verdict, allOK = "FAIL", false
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", verdict, c.name, detail)
	}
	tw.Flush()
	if allOK {
		fmt.Fprintln(w, "verdict: local mode can run here")
	} else {
		fmt.Fprintln(w, "verdict: local mode cannot run here")
	}
	return allOK
}

func hasCapSysAdmin() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_ADMIN) != 0
		}
	}
	return false
}
