package eval

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		name  string
		line  string
		ok    bool
		msg   string
		attrs map[string]string
	}{
		{"checkpoint", `time=2026-11-26T16:21:24.118Z level=INFO msg=checkpoint function=probe.openfaas-fn request=1 packed=4818686 dump=96.261762ms frozen=24.642ms`,
			true, "checkpoint", map[string]string{"function": "probe.openfaas-fn", "request": "1", "packed": "4818686", "dump": "96.261762ms", "frozen": "24.642ms"}},
		{"quoted values", `time=2026-11-26T16:21:24Z level=WARN msg="checkpoint failed" function=f err="criu: \"bad\" thing"`,
			true, "checkpoint failed", map[string]string{"function": "f", "err": `criu: "bad" thing`}},
		{"not slog", `Traceback (most recent call last):`, false, "", nil},
		{"no time", `level=INFO msg=x`, false, "", nil},
		{"unterminated quote", `time=2026-11-26T16:21:24Z msg="oops`, false, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ok := parseLogLine(tt.line)
			if ok != tt.ok {
				t.Fatalf("ok = %v", ok)
			}
			if !ok {
				return
			}
			if l.Msg != tt.msg {
				t.Errorf("msg %q", l.Msg)
			}
			for k, v := range tt.attrs {
				if l.Attrs[k] != v {
					t.Errorf("%s = %q, want %q", k, l.Attrs[k], v)
				}
			}
		})
	}
}

// Log events are attributed to the request that triggered them, even when
// another worker served the same lineage meanwhile (E=1), and only the
// run's own function counts; the tail reads only what came after the mark.
func TestLogEvents(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	samples := []Sample{
		{Index: 0, Lineage: 1, SentMS: 0},
		{Index: 1, Lineage: 2, SentMS: 100}, // triggers the checkpoint at 2 (dump+upload 250 ms)
		{Index: 2, Lineage: 2, SentMS: 200}, // another worker, restored from 1
		{Index: 3, Lineage: 3, SentMS: 300},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "provider.log")
	old := "time=2025-12-31T23:59:59Z level=INFO msg=checkpoint function=f.openfaas-fn request=9 dump=1ms frozen=1ms upload=1ms\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	tail := &logTail{path: path}
	tail.mark()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("time=2026-01-01T00:00:00.360Z level=INFO msg=checkpoint function=f.openfaas-fn snapshot=k request=2 packed=5 raw=20 dump=100ms frozen=40ms upload=150ms\n")
	f.WriteString("time=2026-01-01T00:00:00.370Z level=INFO msg=checkpoint function=g.openfaas-fn request=2 dump=1ms frozen=1ms upload=1ms\n")
	f.WriteString("some worker output\n")
	f.WriteString("time=2026-01-01T00:00:00.310Z level=WARN msg=\"restore not possible now, cold start\" function=f.openfaas-fn err=x\n")
	f.Close()
	lines, err := tail.lines()
	if err != nil {
		t.Fatal(err)
	}
	got := logEvents(lines, "f.openfaas-fn", samples, start)
	want := []Event{
		{Kind: EventCheckpoint, Index: 1, RequestNumber: 2, Seconds: 0.1, FrozenSeconds: 0.04, UploadSeconds: 0.15, PackedBytes: 5, RawBytes: 20},
		{Kind: EventRestoreFailed, Index: 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events\n%+v\nwant\n%+v", got, want)
	}
	var none *logTail
	if l, err := none.lines(); err != nil || l != nil {
		t.Errorf("no log: %v %v", l, err)
	}
}
