package agent

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestDescribeExit(t *testing.T) {
	for _, tc := range []struct {
		status unix.WaitStatus
		want   string
	}{
		{unix.WaitStatus(3 << 8), "exit status 3"},
		{unix.WaitStatus(unix.SIGKILL), "killed by SIGKILL"},
		{unix.WaitStatus(unix.SIGSEGV), "killed by SIGSEGV"},
	} {
		if got := describeExit(tc.status); got != tc.want {
			t.Errorf("describeExit(%#x) = %q, want %q", uint32(tc.status), got, tc.want)
		}
	}
}
