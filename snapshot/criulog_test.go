package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Logs as criu 4.2 writes them at log level 2 (the fixtures come from real
// runs in this package's tests; the last one is at level 4, with timestamps).
const (
	logDumpFullDisk = `Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
Warn  (compel/arch/x86/src/lib/infect.c:419): Will restore 1001 with interrupted system call
Error (criu/page-xfer.c:263): page-xfer: Unable to spice data: No space left on device
Error (criu/bfd.c:131): bfd: Error flushing image: No space left on device
Error (criu/mem.c:718): Can't dump page with parasite
Error (criu/bfd.c:131): bfd: Error flushing image: No space left on device
Error (criu/cr-dump.c:1975): Dumping FAILED.
`
	logPidTaken = `Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
Error (criu/cr-restore.c:1237): Can't fork for 1001: File exists
Error (criu/cr-restore.c:2331): Restoring FAILED.
`
	logShortCore = `Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
Error (criu/protobuf.c:93): Read 1294 bytes while 2601 expected from /x/core-1001.img: No such file or directory
Error (criu/cr-restore.c:2331): Restoring FAILED.
`
	logFailedRead = `Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
Error (criu/protobuf.c:93): Read -1 bytes while 4 expected on /x/core-1001.img: Input/output error
Error (criu/cr-restore.c:2331): Restoring FAILED.
`
	logHeadMagic = `Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
Error (criu/image.c:554): Head magic doesn't match for core-1001.img
Error (criu/cr-restore.c:517): Can't open core data for 1001
Error (criu/cr-restore.c:2331): Restoring FAILED.
`
	logMissingPages = `Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
pie: 1001: Error (criu/pie/restorer.c:1907): Can't read pages data (-9)
Error (criu/cr-restore.c:2331): Restoring FAILED.
`
	logSegfault = `Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
Error (criu/cr-restore.c:1281): 1001 stopped by signal 11: Segmentation fault
Error (criu/cr-restore.c:2331): Restoring FAILED.
Error (criu/cr-restore.c:1269): 1001 killed by signal 9: Killed
`
	logOnlyHarmless = `Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
`
	logWarnOnly = `Warn  (compel/arch/x86/src/lib/infect.c:419): Will restore 1001 with interrupted system call
Warn  (criu/cr-dump.c:1): something odd
`
	logTimestamps = `(00.000012) Version: 4.2.1 (gitid 0)
(00.000543) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.003121)   1001: Error (criu/protobuf.c:101): Failed unpacking object 0x7f1995652530 from /x/mm-1001.img
(00.003200) Error (criu/cr-restore.c:2331): Restoring FAILED.
`
)

func TestReadCRIULog(t *testing.T) {
	tests := []struct {
		name        string
		log         string
		errno       unix.Errno
		wantLine    string
		wantCorrupt bool
	}{
		{name: "full disk on dump", log: logDumpFullDisk, wantLine: "Error (criu/page-xfer.c:263): page-xfer: Unable to spice data: No space left on device"},
		{name: "full disk, criu names the errno", log: logDumpFullDisk, errno: unix.ENOSPC, wantLine: "Error (criu/page-xfer.c:263): page-xfer: Unable to spice data: No space left on device"},
		{name: "pid taken", log: logPidTaken, errno: unix.EEXIST, wantLine: "Error (criu/cr-restore.c:1237): Can't fork for 1001: File exists"},
		{name: "short image, stale errno text", log: logShortCore, wantLine: "Read 1294 bytes while 2601 expected", wantCorrupt: true},
		{name: "failed read is not damage", log: logFailedRead, wantLine: "Input/output error"},
		{name: "bad magic", log: logHeadMagic, wantLine: "Head magic doesn't match for core-1001.img", wantCorrupt: true},
		{name: "missing pages image", log: logMissingPages, wantLine: "Can't read pages data (-9)", wantCorrupt: true},
		{name: "restored task crashed", log: logSegfault, wantLine: "1001 stopped by signal 11: Segmentation fault"},
		{name: "only the harmless error", log: logOnlyHarmless, wantLine: "RLIMIT_NOFILE"},
		{name: "warnings only", log: logWarnOnly, wantLine: "something odd"},
		{name: "timestamps and pids", log: logTimestamps, wantLine: "1001: Error (criu/protobuf.c:101): Failed unpacking object", wantCorrupt: true},
		{name: "empty", log: "", wantLine: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := readCRIULog(tc.log, tc.errno)
			if !strings.Contains(v.line, tc.wantLine) || (tc.wantLine == "" && v.line != "") {
				t.Errorf("line = %q, want it to contain %q", v.line, tc.wantLine)
			}
			if strings.HasPrefix(v.line, "(") {
				t.Errorf("line %q keeps its timestamp", v.line)
			}
			if v.corrupt != tc.wantCorrupt {
				t.Errorf("corrupt = %v, want %v", v.corrupt, tc.wantCorrupt)
			}
		})
	}
}

func TestCRIUFailure(t *testing.T) {
	dir := t.TempDir()
	write := func(log string) string {
		p := filepath.Join(dir, "x.log")
		if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goCRIUErr := func(errno int) error {
		return errors.Join(
			errors.New("operation failed (msg:Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n err:"+itoa(errno)+")"),
			errors.New("criu swrk failed: exit status 1"))
	}
	tests := []struct {
		name      string
		log       string // "" means no log file
		callErr   error
		want      []string
		wantIs    []error
		wantNotIs []error
	}{
		{name: "full disk", log: logDumpFullDisk, callErr: goCRIUErr(0),
			want: []string{"criu dump of pid 1 failed: Error (criu/page-xfer.c:263): page-xfer: Unable to spice data: No space left on device (log "}},
		{name: "errno not in the chosen line", log: logSegfault, callErr: goCRIUErr(5),
			want: []string{"Segmentation fault (criu errno 5: input/output error)"}, wantIs: []error{unix.EIO}, wantNotIs: []error{ErrCorrupt}},
		{name: "pid taken", log: logPidTaken, callErr: goCRIUErr(17),
			want: []string{"Can't fork for 1001: File exists (log"}, wantIs: []error{unix.EEXIST}, wantNotIs: []error{ErrCorrupt}},
		{name: "damaged images", log: logHeadMagic, callErr: goCRIUErr(0),
			want: []string{"criu dump of pid 1: snapshot corrupt: Error (criu/image.c:554): Head magic"}, wantIs: []error{ErrCorrupt}},
		{name: "no log", callErr: goCRIUErr(0),
			want: []string{"failed: operation failed (msg:Error", "err:0); criu swrk failed: exit status 1 (no log: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "missing.log")
			if tc.log != "" {
				path = write(tc.log)
			}
			err := criuFailure("criu dump of pid 1", tc.callErr, path)
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("message has several lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
			for _, k := range tc.wantIs {
				if !errors.Is(err, k) {
					t.Errorf("%q does not wrap %v", msg, k)
				}
			}
			for _, k := range tc.wantNotIs {
				if errors.Is(err, k) {
					t.Errorf("%q wraps %v", msg, k)
				}
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
