package eval

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// The provider logs one key=value line per snapshot event (log/slog's
// text format). Its /metrics carry dump and restore durations but not how
// long the function was frozen, nor which request a checkpoint was taken
// at, so the driver reads those from the log of the provider it started
// (or the one --provider-log names).

// logLine is one parsed log line.
type logLine struct {
	Time  time.Time
	Msg   string
	Attrs map[string]string
}

// parseLogLine splits `time=... level=INFO msg=checkpoint function=f ...`
// into its attributes; quoted values are unquoted. ok is false for lines
// that are not slog text (the provider's workers' own output, for one).
func parseLogLine(line string) (logLine, bool) {
	attrs := map[string]string{}
	for rest := strings.TrimSpace(line); rest != ""; {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 || strings.ContainsAny(rest[:eq], " \"") {
			return logLine{}, false
		}
		key := rest[:eq]
		rest = rest[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			// Find the closing quote, skipping escaped ones.
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				return logLine{}, false
			}
			q, err := strconv.Unquote(rest[:end+1])
			if err != nil {
				return logLine{}, false
			}
			val, rest = q, rest[end+1:]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		attrs[key] = val
		rest = strings.TrimLeft(rest, " ")
	}
	t, err := time.Parse(time.RFC3339Nano, attrs["time"])
	if err != nil || attrs["msg"] == "" {
		return logLine{}, false
	}
	return logLine{Time: t, Msg: attrs["msg"], Attrs: attrs}, true
}

// logTail reads what a log file gained since the last mark.
type logTail struct {
	path string
	off  int64
}

// mark remembers the current end of the file.
func (t *logTail) mark() {
	if t == nil {
		return
	}
	if st, err := os.Stat(t.path); err == nil {
		t.off = st.Size()
	}
}

// lines parses the lines written since the mark.
func (t *logTail) lines() ([]logLine, error) {
	if t == nil {
		return nil, nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return nil, fmt.Errorf("provider log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("provider log: %w", err)
	}
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if l, ok := parseLogLine(sc.Text()); ok {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// logEvents turns the log lines about function (its display name, e.g.
// "bfs-rc-e4-x.openfaas-fn") into events. Index is the request the event
// followed: the last sample sent before the line was logged whose lineage
// is the checkpoint's request number (any sample for a failed restore).
func logEvents(lines []logLine, function string, samples []Sample, start time.Time) []Event {
	var out []Event
	dur := func(l logLine, key string) float64 {
		d, err := time.ParseDuration(l.Attrs[key])
		if err != nil {
			return 0
		}
		return d.Seconds()
	}
	num := func(l logLine, key string) int64 {
		n, _ := strconv.ParseInt(l.Attrs[key], 10, 64)
		return n
	}
	// trigger finds the request an event followed: among the samples sent
	// before the line was logged (with the checkpoint's lineage, when one
	// is given), the one sent closest to when the event began (the line's
	// time minus the event's own duration). With E=1 another worker may
	// serve the same lineage while a checkpoint is still uploading, so the
	// latest such sample is not always the one.
	trigger := func(at time.Time, took float64, lineage int) int {
		ms := float64(at.Sub(start)) / float64(time.Millisecond)
		began := ms - took*1000
		best, gap := -1, math.Inf(1)
		for _, s := range samples {
			if s.SentMS > ms || (lineage > 0 && s.Lineage != lineage) {
				continue
			}
			if g := math.Abs(s.SentMS - began); g < gap {
				best, gap = s.Index, g
			}
		}
		return best
	}
	for _, l := range lines {
		if l.Attrs["function"] != function {
			continue
		}
		switch l.Msg {
		case "checkpoint":
			req := int(num(l, "request"))
			e := Event{Kind: EventCheckpoint, RequestNumber: req, Seconds: dur(l, "dump"), FrozenSeconds: dur(l, "frozen"),
				UploadSeconds: dur(l, "upload"), PackedBytes: num(l, "packed"), RawBytes: num(l, "raw")}
			e.Index = trigger(l.Time, e.Seconds+e.UploadSeconds, req)
			out = append(out, e)
		case "checkpoint failed":
			req := int(num(l, "request"))
			out = append(out, Event{Kind: EventCheckpointFailed, Index: trigger(l.Time, 0, req), RequestNumber: req})
		case "restore not possible now, cold start", "bad snapshot dropped, cold start":
			out = append(out, Event{Kind: EventRestoreFailed, Index: trigger(l.Time, 0, 0)})
		}
	}
	return out
}
