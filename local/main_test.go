package local

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pronghorn-openfaas/pronghorn/agent"
)

// The test binary plays three parts, chosen by PRONGHORN_TEST_ROLE: the test
// suite, an agent (what the provider binary does in `pronghorn agent`), and a
// trivial function, so these tests need no runtime installed.
func TestMain(m *testing.M) {
	switch os.Getenv("PRONGHORN_TEST_ROLE") {
	case "agent":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := agent.Main(ctx, os.Stdin, os.Stdout, os.Stderr, "test"); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "function":
		testFunction()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testFunction answers every request with its request count, PID, the
// GREETING variable and the content of the secret named by SECRET_NAME.
func testFunction() {
	if msg := os.Getenv("FAIL_AT_START"); msg != "" {
		fmt.Println(msg)
		os.Exit(3)
	}
	addr := strings.TrimPrefix(os.Getenv("upstream_url"), "http://")
	if addr == "" {
		addr = "127.0.0.1:5000"
	}
	var count atomic.Int64
	// /alloc?mb=N allocates and touches N MiB and keeps it.
	var hoard [][]byte
	http.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		for range mb {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
		fmt.Fprintf(w, "allocated %d MiB", len(hoard))
	})
	// /fork?n=N starts up to N sleeping processes and says how many it
	// could, then stops them.
	http.HandleFunc("/fork", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		var started []*os.Process
		for range n {
			p, err := os.StartProcess("/bin/sleep", []string{"sleep", "30"}, &os.ProcAttr{})
			if err != nil {
				break
			}
			started = append(started, p)
		}
		for _, p := range started {
			_ = p.Kill()
			_, _ = p.Wait()
		}
		fmt.Fprintf(w, "started %d", len(started))
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		secret := "-"
		if name := os.Getenv("SECRET_NAME"); name != "" {
			b, err := os.ReadFile("/var/openfaas/secrets/" + name)
			if err == nil {
				secret = string(b)
			}
		}
		w.Header().Set("X-Test-Method", r.Method)
		fmt.Fprintf(w, "count=%d pid=%d greeting=%s secret=%s path=%s", count.Add(1), os.Getpid(), os.Getenv("GREETING"), secret, r.URL.RequestURI())
	})
	fmt.Println("test function listening on", addr)
	if err := http.ListenAndServe(addr, nil); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
