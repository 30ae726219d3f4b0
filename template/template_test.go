// Package template holds faas-cli function templates for Pronghorn
// (template/<language>/: template.yml, Dockerfile, the runtime's server and
// a handler skeleton in function/). This test checks them without Docker
// or faas-cli: each template agrees with itself (template.yml, Dockerfile,
// function.json), and its server, laid out as `faas-cli build
// --shrinkwrap` lays it out, runs with the runtime installed here and
// answers calls, chunked ones included (the OpenFaaS gateway forwards
// bodies chunked). e2e/cluster_templates_test.go runs them in pods.
package template

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

type templateCase struct {
	lang    string
	runtime string // the binary the fprocess runs
	handler string // the skeleton the user edits, under function/
}

func templates() []templateCase {
	return []templateCase{
		{"pronghorn-pypy", "pypy3", "handler.py"},
		{"pronghorn-node", "node", "handler.js"},
		{"pronghorn-jvm", "java", "Handler.java"},
	}
}

type templateYML struct {
	Language string `json:"language"`
	FProcess string `json:"fprocess"`
}

func readTemplate(t *testing.T, lang string) templateYML {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(lang, "template.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tpl templateYML
	if err := yaml.Unmarshal(raw, &tpl); err != nil {
		t.Fatalf("%s/template.yml: %v", lang, err)
	}
	return tpl
}

// TestTemplatesAgree: one fprocess in template.yml (what faas-cli deploys),
// the Dockerfile's ENV (what the image runs) and function.json (what local
// mode and cluster/images/build.sh read); the Dockerfile bundles the agent
// and CRIU and runs the agent; the handler skeleton is there.
func TestTemplatesAgree(t *testing.T) {
	envFprocess := regexp.MustCompile(`(?m)^ENV fprocess="([^"]+)"`)
	for _, tt := range templates() {
		t.Run(tt.lang, func(t *testing.T) {
			tpl := readTemplate(t, tt.lang)
			if tpl.Language != tt.lang {
				t.Errorf("language %q, want the directory's name %q", tpl.Language, tt.lang)
			}
			if !strings.HasPrefix(tpl.FProcess, tt.runtime+" ") {
				t.Errorf("fprocess %q does not run %s", tpl.FProcess, tt.runtime)
			}
			docker, err := os.ReadFile(filepath.Join(tt.lang, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			if m := envFprocess.FindSubmatch(docker); m == nil || string(m[1]) != tpl.FProcess {
				t.Errorf("Dockerfile's ENV fprocess %q, template.yml's %q", m, tpl.FProcess)
			}
			for _, want := range []string{
				"COPY --from=pronghorn /usr/bin/pronghorn /usr/bin/pronghorn",
				"/opt/pronghorn/criu/bin/criu",
				`ENTRYPOINT ["/usr/bin/pronghorn", "agent", "--from-env"]`,
				"WORKDIR /home/app",
			} {
				if !strings.Contains(string(docker), want) {
					t.Errorf("Dockerfile lacks %q", want)
				}
			}
			var fn struct {
				FProcess string `json:"fprocess"`
			}
			raw, err := os.ReadFile(filepath.Join(tt.lang, "function.json"))
			if err != nil || json.Unmarshal(raw, &fn) != nil || fn.FProcess != tpl.FProcess {
				t.Errorf("function.json's fprocess %q (%v), template.yml's %q", fn.FProcess, err, tpl.FProcess)
			}
			if _, err := os.Stat(filepath.Join(tt.lang, "function", tt.handler)); err != nil {
				t.Errorf("no handler skeleton: %v", err)
			}
		})
	}
}

// TestTemplatesServe runs each template's server with its skeleton as
// faas-cli's shrinkwrapped build context has them, and calls it: plain,
// chunked and empty bodies; the skeleton's counter goes up by one a call.
func TestTemplatesServe(t *testing.T) {
	for _, tt := range templates() {
		t.Run(tt.lang, func(t *testing.T) {
			if _, err := exec.LookPath(tt.runtime); err != nil {
				t.Skipf("no %s here (scripts/setup.sh installs it)", tt.runtime)
			}
			dir := shrinkwrap(t, tt.lang)
			if tt.runtime == "java" {
				if _, err := exec.LookPath("javac"); err != nil {
					t.Skip("no javac here")
				}
				// As the Dockerfile's build stage does.
				srcs, _ := filepath.Glob(filepath.Join(dir, "*.java"))
				fsrcs, _ := filepath.Glob(filepath.Join(dir, "function", "*.java"))
				out, err := exec.Command("javac", append([]string{"--release", "17", "-d", filepath.Join(dir, "classes")}, append(srcs, fsrcs...)...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("javac: %v\n%s", err, out)
				}
			}
			url := serve(t, dir, readTemplate(t, tt.lang).FProcess)
			for i, call := range []struct {
				name string
				body io.Reader
				size int
			}{
				{"content-length", strings.NewReader("hello"), 5},
				// An io.Reader of unknown length goes out chunked.
				{"chunked", io.MultiReader(strings.NewReader("chunked "), strings.NewReader("body")), 12},
				{"empty", nil, 0},
			} {
				req, err := http.NewRequest(http.MethodPost, url+"/any/path?x=1", call.body)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", call.name, err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var got struct {
					Count    int `json:"count"`
					Received int `json:"received"`
				}
				if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &got) != nil || got.Count != i+1 || got.Received != call.size {
					t.Errorf("%s: %d %s, want count %d and %d bytes received", call.name, resp.StatusCode, raw, i+1, call.size)
				}
			}
		})
	}
}

// shrinkwrap lays the template out as `faas-cli build --shrinkwrap` does
// for a function made with `faas-cli new --lang <lang>`: the template's
// files, with the function's handler directory (here the skeleton itself)
// as function/.
func shrinkwrap(t *testing.T, lang string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "build", "fn")
	err := filepath.WalkDir(lang, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(lang, p)
		if d.IsDir() {
			if d.Name() == "__pycache__" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// serve starts fprocess in dir as the agent would (upstream_url in its
// environment), waits until it accepts calls and stops it at the end.
func serve(t *testing.T, dir, fprocess string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := strings.Fields(fprocess)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "upstream_url=http://"+addr)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	done := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			fmt.Fprintln(&log, s.Text())
		}
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		<-done
		if t.Failed() {
			t.Logf("%s's output:\n%s", fprocess, log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened on %s", fprocess, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
