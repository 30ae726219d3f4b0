// Package snapshottest holds test harness pieces for code using package
// snapshot: a real MinIO server started per test, and a unix-socket proxy
// so processes in another network namespace (a worker) can reach it.
package snapshottest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// DefaultMinIOPath is where scripts/install-minio.sh installs the server.
const DefaultMinIOPath = "/opt/pronghorn/bin/minio"

// MinIO is a running MinIO server owned by a test.
type MinIO struct {
	Endpoint  string // 127.0.0.1:port
	AccessKey string
	SecretKey string
	DataDir   string
	bin       string
	cmd       *exec.Cmd
}

// MinIOBinary returns $PRONGHORN_MINIO or DefaultMinIOPath, and whether it exists.
func MinIOBinary() (string, bool) {
	p := os.Getenv("PRONGHORN_MINIO")
	if p == "" {
		p = DefaultMinIOPath
	}
	_, err := os.Stat(p)
	return p, err == nil
}

// CRIU returns the criu tests should run ($PRONGHORN_CRIU, else
// snapshot.DefaultCRIUPath), or skips the test with the reason.
func CRIU(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("CRIU tests need root")
	}
	p := os.Getenv("PRONGHORN_CRIU")
	if p == "" {
		p = snapshot.DefaultCRIUPath
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("criu not found at %s (set PRONGHORN_CRIU or run scripts/install-criu.sh)", p)
	}
	return p
}

// StartMinIO starts a MinIO server on a random free 127.0.0.1 port with a
// temporary data dir and stops it when the test ends. It skips the test
// when the binary is absent (install it with scripts/install-minio.sh).
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin, ok := MinIOBinary()
	if !ok {
		t.Skipf("minio binary not found at %s (set PRONGHORN_MINIO or run scripts/install-minio.sh)", bin)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	m := &MinIO{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "pronghorn",
		SecretKey: randomHex(16),
		DataDir:   t.TempDir(),
		bin:       bin,
	}
	m.start(t)
	return m
}

// Restart starts a server stopped with StopMinIO again, on the same address
// and data, as after an outage.
func (m *MinIO) Restart(t testing.TB) {
	t.Helper()
	m.start(t)
}

func (m *MinIO) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.Endpoint,
		"--console-address", "127.0.0.1:0", m.DataDir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	logf, err := os.Create(filepath.Join(t.TempDir(), "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start minio: %v", err)
	}
	m.cmd = cmd
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	// /minio/health/ready can answer before the object layer is up ("Server
	// not initialized yet"), so ready means a signed API call succeeds.
	client, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := client.ListBuckets(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("minio did not become ready on %s: %v\n%s", m.Endpoint, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client returns a minio-go client for this server, to arrange what a
// store would not do itself (leftovers of a killed provider).
func (m *MinIO) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Config returns a store configuration for bucket on this server.
func (m *MinIO) Config(bucket string) snapshot.MinIOConfig {
	return snapshot.MinIOConfig{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
}

// FreePort asks the kernel for an unused TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// UnixProxy listens on a unix socket in a temp dir and forwards every
// connection to the TCP address target, until the test ends. A worker in its
// own network namespace can reach target through the socket file because
// the filesystem is shared.
func UnixProxy(t testing.TB, target string) string {
	t.Helper()
	// Unix socket paths are limited to ~108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "phproxy")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		os.RemoveAll(dir)
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { io.Copy(c, u); c.(*net.UnixConn).CloseWrite(); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return sock
}

// UnixTransport returns an HTTP transport that dials sock whatever the URL
// says; use it as snapshot.MinIOConfig.Transport inside a worker.
func UnixTransport(sock string) http.RoundTripper {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// StopMinIO kills the server before the test ends, to test an outage.
func StopMinIO(m *MinIO) {
	m.cmd.Process.Kill()
	m.cmd.Wait()
}
