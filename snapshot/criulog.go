package snapshot

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// criuError is a failed criu run reduced to one line of its log. It wraps
// ErrCorrupt when the log shows damaged images, and criu's errno when it
// reported one (so errors.Is(err, unix.ENOSPC) works).
type criuError struct {
	msg     string
	wrapped []error
}

func (e *criuError) Error() string   { return e.msg }
func (e *criuError) Unwrap() []error { return e.wrapped }

// criuFailure builds the error of a failed criu call from its log at
// logPath. callErr is go-criu's error: its message is criu's first error,
// which is often a harmless one (RLIMIT_NOFILE), so it only serves as the
// cause when there is no log.
func criuFailure(op string, callErr error, logPath string) error {
	errno := criuErrno(callErr)
	wrapped := []error{callErr}
	if errno != 0 {
		wrapped = append(wrapped, errno)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		return &criuError{
			msg:     fmt.Sprintf("%s failed: %s (no log: %v)", op, oneLine(callErr.Error()), err),
			wrapped: wrapped,
		}
	}
	v := readCRIULog(string(b), errno)
	line := v.line
	if line == "" {
		line = oneLine(callErr.Error())
	}
	if errno != 0 && !strings.Contains(strings.ToLower(line), errno.Error()) {
		line += fmt.Sprintf(" (criu errno %d: %s)", int(errno), errno.Error())
	}
	if v.corrupt {
		return &criuError{
			msg:     fmt.Sprintf("%s: %s: %s (log %s)", op, ErrCorrupt, line, logPath),
			wrapped: append(wrapped, ErrCorrupt),
		}
	}
	return &criuError{msg: fmt.Sprintf("%s failed: %s (log %s)", op, line, logPath), wrapped: wrapped}
}

// criuErrnoRe finds the errno go-criu appends to a failed request:
// "operation failed (msg:... err:17)".
var criuErrnoRe = regexp.MustCompile(`err:(\d+)\)`)

func criuErrno(err error) unix.Errno {
	m := criuErrnoRe.FindAllStringSubmatch(err.Error(), -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return unix.Errno(n)
}

// oneLine joins the lines of a go-criu error (errors.Join, criu's own
// newline-terminated message) into one.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// criuLogVerdict is what a failed run's log says.
type criuLogVerdict struct {
	line    string // the line that names the cause, timestamp stripped
	corrupt bool   // the images themselves are bad
}

var (
	// criuLogPrefix is the timestamp (and, for lines of restored tasks, the
	// pid) in front of every line.
	criuLogPrefix = regexp.MustCompile(`^\(\s*[0-9.]+\)\s*`)
	// criuImageDamage matches what criu logs (criu/image.c, protobuf.c,
	// cr-restore.c) when an image is bad rather than unreadable: a wrong
	// magic, a record cut short (a non-negative count: -1 is a failed
	// read, whose errno is real), a record that does not unpack, an image
	// that is empty because it is missing, or a pages image that was never
	// opened (-EBADF).
	criuImageDamage = regexp.MustCompile(`[Mm]agic doesn't match|Unexpected EOF|Img trimmed|` +
		`Read \d+ bytes while \d+ expected|Failed unpacking object|Image corrupted|image corruption|` +
		`Corrupted (root cgset|ghost image)|Not supported images version|Too old image|Can't read pages data \(-9\)`)
	// criuHarmless are errors criu logs and carries on after.
	criuHarmless = regexp.MustCompile(`RLIMIT_NOFILE`)
	// criuSummary are errors that only say that something above failed.
	criuSummary = regexp.MustCompile(`(Dumping|Restoring) FAILED|killed by signal 9`)
)

// readCRIULog picks the one line of a criu log that says what went wrong.
// criu logs its first error first, but that is often a harmless one, and
// what follows a failure is mostly consequences, so in order of preference:
// a line showing damaged images; the first error naming the errno criu
// returned; the first error with errno text; the first error that is
// neither harmless nor a summary; any error; the last warning; the last
// line.
func readCRIULog(log string, errno unix.Errno) criuLogVerdict {
	var errs, warns []string
	last := ""
	for _, l := range strings.Split(log, "\n") {
		l = strings.TrimSpace(criuLogPrefix.ReplaceAllString(l, ""))
		if l == "" {
			continue
		}
		last = l
		switch {
		case strings.Contains(l, "Error ("):
			errs = append(errs, l)
		case strings.Contains(l, "Warn "):
			warns = append(warns, l)
		}
	}
	for _, l := range errs {
		if criuImageDamage.MatchString(l) {
			return criuLogVerdict{line: l, corrupt: true}
		}
	}
	relevant := func(l string) bool { return !criuHarmless.MatchString(l) && !criuSummary.MatchString(l) }
	if errno != 0 {
		for _, l := range errs {
			if relevant(l) && strings.Contains(strings.ToLower(l), errno.Error()) {
				return criuLogVerdict{line: l}
			}
		}
	}
	for _, l := range errs {
		if relevant(l) && hasErrnoText(l) {
			return criuLogVerdict{line: l}
		}
	}
	for _, l := range errs {
		if relevant(l) {
			return criuLogVerdict{line: l}
		}
	}
	switch {
	case len(errs) > 0:
		return criuLogVerdict{line: errs[len(errs)-1]}
	case len(warns) > 0:
		return criuLogVerdict{line: warns[len(warns)-1]}
	}
	return criuLogVerdict{line: last}
}

// hasErrnoText reports whether l ends like criu's pr_perror lines do,
// with ": " and a strerror text.
func hasErrnoText(l string) bool {
	i := strings.LastIndex(l, ": ")
	if i < 0 {
		return false
	}
	tail := strings.ToLower(l[i+2:])
	for e := unix.Errno(1); e < 134; e++ {
		if tail == e.Error() {
			return true
		}
	}
	return false
}
