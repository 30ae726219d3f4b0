package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

func TestResolveImage(t *testing.T) {
	mkdir := func(path string) string {
		t.Helper()
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			t.Fatal(err)
		}
		return real
	}
	symlink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	fns := filepath.Join(root, "functions")
	counter := mkdir(filepath.Join(fns, "counter"))
	tool := mkdir(filepath.Join(fns, "team", "tool"))
	extra := filepath.Join(root, "extra")
	extraFn := mkdir(filepath.Join(extra, "fn"))
	outside := mkdir(filepath.Join(root, "outside"))
	if err := os.WriteFile(filepath.Join(fns, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	symlink("/etc", filepath.Join(fns, "etc-link"))
	symlink(outside, filepath.Join(fns, "outside-link"))
	symlink("../outside", filepath.Join(fns, "relative-link"))
	symlink(counter, filepath.Join(fns, "alias"))
	symlink(extraFn, filepath.Join(fns, "extra-link"))
	symlink(fns, filepath.Join(fns, "self"))
	symlink(fns, filepath.Join(root, "functions-link"))
	symlink(extra, filepath.Join(root, "extra-alias"))
	symlink(filepath.Join(fns, "counter"), filepath.Join(extra, "back"))

	for _, tc := range []struct {
		name      string
		functions string   // default fns
		allowed   []string // default none
		image     string
		want      string // the real directory; empty: a 400 whose reason contains reason
		reason    string
	}{
		// Names under the functions dir.
		{name: "plain name", image: "counter", want: counter},
		{name: "tag", image: "counter:1.2", want: counter},
		{name: "digest", image: "counter@sha256:0123abcd", want: counter},
		{name: "tag and digest", image: "counter:1.2@sha256:0123abcd", want: counter},
		{name: "registry prefix", image: "ghcr.io/me/counter:latest", want: counter},
		{name: "registry with port", image: "localhost:5000/counter:0.1", want: counter},
		{name: "nested name", image: "team/tool:dev", want: tool},
		{name: "dot prefix", image: "./counter", want: counter},
		{name: "missing", image: "missing", reason: "no function directory at " + filepath.Join(fns, "missing")},
		{name: "a file, not a directory", image: "file", reason: "no function directory"},
		{name: "empty", image: "", reason: "image is required"},
		{name: "only a tag", image: ":latest", reason: "names no function directory"},
		{name: "dot", image: ".", reason: "names no function directory"},
		{name: "the functions dir through a symlink in it", image: "self", reason: "outside the functions dir"},

		// Attempts to climb out of it.
		{name: "dot dot", image: "..", reason: `may not contain ".."`},
		{name: "dot dot prefix", image: "../../etc", reason: `may not contain ".."`},
		{name: "dot dot inside", image: "team/../../outside", reason: `may not contain ".."`},
		{name: "dot dot with tag", image: "../outside:latest", reason: `may not contain ".."`},

		// Absolute paths.
		{name: "absolute inside", image: filepath.Join(fns, "counter"), want: counter},
		{name: "absolute inside, unclean", image: fns + "/team/../counter/", want: counter},
		{name: "absolute nested", image: filepath.Join(fns, "team", "tool"), want: tool},
		{name: "absolute root", image: "/", reason: "/ is outside the functions dir"},
		{name: "absolute system dir", image: "/etc", reason: "/etc is outside the functions dir"},
		{name: "absolute missing outside", image: "/no/such/dir", reason: "outside the functions dir"},
		{name: "absolute functions dir itself", image: fns, reason: "outside the functions dir"},
		{name: "absolute escape by dot dot", image: fns + "/../outside", reason: "outside the functions dir"},
		{name: "absolute sibling with common prefix", image: fns + "-other", reason: "outside the functions dir"},

		// Symlinks are followed, and where they end is what counts.
		{name: "symlink to /etc", image: "etc-link", reason: "resolves to /etc, outside the functions dir"},
		{name: "absolute symlink to /etc", image: filepath.Join(fns, "etc-link"), reason: "outside the functions dir"},
		{name: "symlink outside", image: "outside-link", reason: "outside the functions dir"},
		{name: "relative symlink outside", image: "relative-link:latest", reason: "outside the functions dir"},
		{name: "symlink inside", image: "alias", want: counter},
		{name: "symlink to an extra dir not allowed", image: "extra-link", reason: "outside the functions dir"},
		{name: "functions dir through a symlink", functions: filepath.Join(root, "functions-link"), image: "counter", want: counter},
		{name: "absolute through the functions dir's symlink", functions: filepath.Join(root, "functions-link"),
			image: filepath.Join(fns, "counter"), want: counter},

		// Directories the operator allowed besides the functions dir.
		{name: "allowed dir's function", allowed: []string{extra}, image: filepath.Join(extra, "fn"), want: extraFn},
		{name: "allowed dir itself", allowed: []string{extraFn}, image: extraFn, want: extraFn},
		{name: "allowed dir's function not allowed", image: filepath.Join(extra, "fn"), reason: "outside the functions dir"},
		{name: "symlink to an allowed dir", allowed: []string{extra}, image: "extra-link", want: extraFn},
		{name: "allowed dir given through a symlink", allowed: []string{filepath.Join(root, "extra-alias")}, image: filepath.Join(extra, "fn"), want: extraFn},
		// An absolute path is judged as spelled before it is looked at.
		{name: "allowed dir named through another symlink", allowed: []string{extra}, image: filepath.Join(root, "extra-alias", "fn"), reason: "outside the functions dir"},
		{name: "allowed dir's symlink into the functions dir", allowed: []string{extra}, image: filepath.Join(extra, "back"), want: counter},
		{name: "allowed does not widen to its parent", allowed: []string{extraFn}, image: extra, reason: "outside the functions dir"},
		{name: "allowed does not admit other dirs", allowed: []string{extra}, image: outside, reason: "outside the functions dir"},
		{name: "allowed does not admit names outside the functions dir", allowed: []string{extra}, image: "fn", reason: "no function directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			functions := tc.functions
			if functions == "" {
				functions = fns
			}
			got, err := resolveImage(functions, tc.allowed, tc.image)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("got %q, %v; want ErrInvalid", got, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.reason) || strings.ContainsAny(msg, "\r\n") {
				t.Errorf("reason %q, want one line containing %q", msg, tc.reason)
			}
		})
	}
}
