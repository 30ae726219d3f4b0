package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pronghorn-openfaas/pronghorn/benchmarks/eval"
)

func TestParseProgress(t *testing.T) {
	tests := []struct {
		mode    string
		want    eval.ProgressMode
		wantErr bool
	}{
		{"bar", eval.ProgressBar, false},
		{"lines", eval.ProgressLines, false},
		{"none", eval.ProgressNone, false},
		{"auto", eval.ProgressLines, false}, // a buffer is no terminal
		{"fancy", 0, true},
	}
	for _, tt := range tests {
		got, err := parseProgress(tt.mode, &bytes.Buffer{})
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("%s: %v, %v", tt.mode, got, err)
		}
	}
}

// --quick takes the reduced grid, except where a flag was given.
func TestApplyQuick(t *testing.T) {
	cmd := newBenchEvalCommand()
	if err := cmd.ParseFlags([]string{"--quick", "--requests", "12", "--seeds", "4,5,6"}); err != nil {
		t.Fatal(err)
	}
	o := eval.DefaultOptions()
	o.Requests, o.Seeds = 12, []int64{4, 5, 6}
	applyQuick(cmd, &o)
	q := eval.QuickOptions()
	if !reflect.DeepEqual(o.Benchmarks, q.Benchmarks) || o.WarmupRequests != q.WarmupRequests || o.ProbeReps != q.ProbeReps {
		t.Errorf("quick grid not applied: %+v", o)
	}
	if o.Requests != 12 || !reflect.DeepEqual(o.Seeds, []int64{4, 5, 6}) {
		t.Errorf("explicit flags overridden: requests %d seeds %v", o.Requests, o.Seeds)
	}
	if len(q.Seeds) < 3 || len(q.Strategies) != 4 || len(q.Rates) != 3 {
		t.Errorf("the quick grid must cover every strategy and rate over three seeds: %+v", q)
	}
}

func TestBenchEvalSubcommands(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"report needs -o", []string{"eval", "report", "."}, "-o DIR is required"},
		{"report needs a directory", []string{"eval", "report", "/nonexistent", "-o", "x"}, "not a directory"},
		{"report of nothing", []string{"eval", "report", "EMPTY", "-o", "OUT"}, "no completed chunks"},
		{"calibrate without warm-up runs", []string{"eval", "calibrate", "EMPTY"}, "nothing to calibrate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			empty, out := t.TempDir(), filepath.Join(t.TempDir(), "out")
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.NewReplacer("EMPTY", empty, "OUT", out).Replace(a)
			}
			cmd := newBenchCommand()
			cmd.SetArgs(args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestIgnoreLogs(t *testing.T) {
	dir := t.TempDir()
	if err := ignoreLogs(dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
	if err != nil || !strings.Contains(string(data), "logs/") {
		t.Errorf(".gitignore %q, %v", data, err)
	}
	// An existing .gitignore is the user's: left alone.
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("mine\n"), 0o644)
	if err := ignoreLogs(dir); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, ".gitignore")); string(data) != "mine\n" {
		t.Errorf("overwrote .gitignore: %q", data)
	}
}
