package e2e

// Tools the cluster tests drive as a person would: kubectl from the dev
// cluster's build, helm (scripts/install-helm.sh), and namespaces with the
// fixed names that yaml/ and the upstream chart use.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// defaultHelm is where scripts/install-helm.sh caches helm.
	defaultHelm = "/opt/pronghorn/bin/helm"
	// e2eLabel marks the namespaces with fixed names a test created, so
	// that a test never deletes one it did not make.
	e2eLabel = "pronghorn-e2e"
)

// requireHelm returns the helm binary, or skips.
func requireHelm(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PRONGHORN_HELM"); p != "" {
		return p
	}
	if _, err := os.Stat(defaultHelm); err == nil {
		return defaultHelm
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	t.Skipf("needs helm: %s is missing (scripts/install-helm.sh builds it)", defaultHelm)
	return ""
}

// kubectlPath is the dev cluster's kubectl: PRONGHORN_KUBECTL, the one
// cluster/up.sh built, or any on PATH.
func (c *devCluster) kubectlPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PRONGHORN_KUBECTL"); p != "" {
		return p
	}
	if m, _ := filepath.Glob("/opt/pronghorn/k8s/v*/bin/kubectl"); len(m) > 0 {
		sort.Strings(m)
		return m[len(m)-1]
	}
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("needs kubectl (cluster/up.sh builds it into /opt/pronghorn/k8s/<version>/bin)")
	}
	return p
}

// kubectl runs kubectl against the dev cluster as its admin, with stdin,
// and returns its output; a failure fails the test.
func (c *devCluster) kubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, err := c.kubectlErr(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *devCluster) kubectlErr(t *testing.T, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(c.kubectlPath(t), append([]string{"--kubeconfig", c.kubeconfig, "--cache-dir", t.TempDir()}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kubectlSplit is kubectl with its standard output and error apart (kubectl
// writes warnings to the latter).
func (c *devCluster) kubectlSplit(t *testing.T, stdin []byte, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(c.kubectlPath(t), append([]string{"--kubeconfig", c.kubeconfig, "--cache-dir", t.TempDir()}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// helm runs helm against the dev cluster and returns its output.
func (c *devCluster) helm(t *testing.T, helm string, args ...string) string {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	// Keep helm's cache and config out of $HOME.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fixedNamespace makes sure namespace name exists for the test (labelled,
// annotated as given) and deletes it at the end, waiting until it is gone so
// the next test can make it again. One that exists without the test label
// is not the tests' to take: the test skips.
func (c *devCluster) fixedNamespace(t *testing.T, name string, annotations map[string]string) {
	t.Helper()
	ns, err := c.client.CoreV1().Namespaces().Get(t.Context(), name, metav1.GetOptions{})
	switch {
	case err == nil && ns.Labels[e2eLabel] == "":
		t.Skipf("namespace %s exists and was not made by these tests; not touching it", name)
	case err == nil && ns.DeletionTimestamp == nil:
		// Left by an interrupted run: start clean.
		c.deleteNamespace(t, name)
	case err == nil:
		c.waitNamespaceGone(t, name)
	case !apierrors.IsNotFound(err):
		t.Fatal(err)
	}
	_, err = c.client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{e2eLabel: "1"}, Annotations: annotations,
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.deleteNamespace(t, name) })
	clusterWait(t, 30*time.Second, "the default ServiceAccount of "+name, func() bool {
		_, err := c.client.CoreV1().ServiceAccounts(name).Get(t.Context(), "default", metav1.GetOptions{})
		return err == nil
	})
}

func (c *devCluster) deleteNamespace(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete namespace %s: %v", name, err)
		return
	}
	c.waitNamespaceGone(t, name)
}

func (c *devCluster) waitNamespaceGone(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		cancel()
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("namespace %s still there after 2 minutes (%v)", name, err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// renderDocuments splits a multi-document YAML stream, dropping empty ones.
func renderDocuments(stream string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+stream, "\n---") {
		keep := false
		for _, l := range strings.Split(d, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				keep = true
				break
			}
		}
		if keep {
			docs = append(docs, strings.TrimSpace(d))
		}
	}
	return docs
}

// readFile returns a file's content.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeTemp writes data to a file in the test's temporary directory.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ctrOutput runs ctr against the cluster's containerd (namespace k8s.io).
func (c *devCluster) ctrOutput(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(c.ctr[0], append(c.ctr[1:], args...)...).CombinedOutput()
	return string(out), err
}

// since formats a duration for the timings the tests log.
func since(t0 time.Time) string { return fmt.Sprint(time.Since(t0).Round(time.Millisecond)) }
