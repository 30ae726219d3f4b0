package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// probeReply is what the tenant function (testdata/tenant) answers.
type probeReply struct {
	Status *int   `json:"status"`
	Signal string `json:"signal"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Calls  int    `json:"calls"`
}

// probe runs cmd in the named function and returns its reply.
func (p *provider) probe(name, cmd string) probeReply {
	p.t.Helper()
	code, body := p.send("POST", "/function/"+name, rawBody(cmd), false)
	if code != 200 {
		p.t.Fatalf("probe %q: %d %s", cmd, code, body)
	}
	var r probeReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		p.t.Fatalf("probe %q: %v: %s", cmd, err, body)
	}
	return r
}

// rawBody is sent as is, not as JSON.
type rawBody string

// TestMaliciousTenant deploys a function that runs whatever its callers
// send, next to a victim with a secret, and shows what it cannot do.
func TestMaliciousTenant(t *testing.T) {
	criu := snapshotRequirements(t)
	bin, dataDir := buildBinary(t), t.TempDir()
	testdata := filepath.Join(repoRoot(t), "e2e", "testdata")
	// A subnet and interface prefix of this test's own: other providers
	// may run on this host at the same time.
	p := startProvider(t, bin, dataDir, "--criu", criu, "--allow-function-dir", testdata, "--worker-pids-max", "64",
		"--worker-subnet", "10.63.0.0/16", "--worker-interface-prefix", "pte")
	world := newOutside(t, "10.98.7")
	// A host service that workers must not reach, on the host's address.
	hostService, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostService.Close()
	hostPort := hostService.Addr().(*net.TCPAddr).Port
	tenantDir := filepath.Join(testdata, "tenant")

	const victimSecret = "victim-token-5f1e"
	p.must(202, "POST", "/system/secrets", types.Secret{Name: "victim-key", Value: victimSecret})
	p.must(202, "POST", "/system/functions", types.FunctionDeployment{Service: "victim", Image: tenantDir, Secrets: []string{"victim-key"}})
	p.must(202, "POST", "/system/functions", types.FunctionDeployment{
		Service: "tenant", Image: tenantDir,
		Limits: &types.FunctionResources{Memory: "128Mi"},
		Annotations: &map[string]string{
			"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "1", "com.pronghorn.evict-after": "20",
		},
	})
	p.waitAvailable("victim", 1)
	p.waitAvailable("tenant", 1)
	if r := p.probe("victim", "cat /var/openfaas/secrets/victim-key"); r.Stdout != victimSecret {
		t.Fatalf("the victim cannot read its own secret: %+v", r)
	}
	port := strings.TrimPrefix(p.url, "http://127.0.0.1:")
	// The first call, which the engine checkpoints, holds a connection to
	// the outside open: the restored worker must come back without it.
	outsideHost, outsidePort, _ := net.SplitHostPort(world.server)
	if r := p.probe("tenant", "HOLD "+outsideHost+" "+outsidePort); r.Stdout != "held\n" {
		t.Fatalf("the tenant cannot reach the outside: %+v", r)
	}
	if r := p.probe("victim", "LISTEN 7000"); r.Stdout != "listening\n" {
		t.Fatalf("victim: %+v", r)
	}
	victimIP := strings.TrimSpace(p.probe("victim", "ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1").Stdout)
	if c, err := net.DialTimeout("tcp", victimIP+":7000", 2*time.Second); err != nil {
		t.Fatalf("the host cannot reach the victim's listener at %s: %v", victimIP, err)
	} else {
		c.Close()
	}

	probes := []struct {
		name, cmd string
		ok        func(probeReply) bool
	}{
		{"runs as an unprivileged user", "id -u; id -g", stdoutIs("1000\n1000\n")},
		{"holds no capabilities, no_new_privs and seccomp on", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$PPID/status | awk '{print $2}' | tr '\\n' ' '",
			stdoutIs("0000000000000000 0000000000000000 1 2 ")},
		{"cannot read another function's secret", "cat /var/openfaas/secrets/victim-key; grep -rsl " + victimSecret + " /tmp /var /home /etc /run /dev/shm /opt; true",
			stdoutIs("")},
		{"cannot read the provider's state file", "cat " + filepath.Join(dataDir, "pronghorn.db") + " | wc -c", stdoutIs("0\n")},
		{"cannot list the snapshot images", "ls " + filepath.Join(dataDir, "work") + " " + filepath.Join(dataDir, "snapshots") + " 2>/dev/null | wc -l", stdoutIs("0\n")},
		{"cannot read /etc/shadow", "cat /etc/shadow | wc -c", stdoutIs("0\n")},
		{"cannot reach the provider on loopback", "CONNECT 127.0.0.1 " + port, stdoutIs("ECONNREFUSED\n")},
		{"cannot reach the provider through its gateway", "CONNECT 10.63.0.1 " + port, stdoutIs("timeout\n")},
		{"cannot reach a host service", "CONNECT " + world.hostAddr + " " + fmt.Sprint(hostPort), stdoutIs("timeout\n")},
		{"cannot reach another worker", "CONNECT " + victimIP + " 7000", stdoutIs("timeout\n")},
		{"reaches the outside", "CONNECT " + outsideHost + " " + outsidePort, stdoutIs("connected\n")},
		{"has a nameserver", "grep -c ^nameserver /etc/resolv.conf", func(r probeReply) bool { return r.Stdout != "0\n" && r.Stdout != "" }},
		{"cannot mount", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted", stdoutIs("")},
		{"cannot leave its namespaces", "unshare -U true && echo unshared", stdoutIs("")},
		{"cannot signal its agent", "kill -KILL 1 && echo killed", stdoutIs("")},
		// Shell builtins only: no process of the probe's own comes and goes.
		{"sees only its own processes", "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n; [ -e /proc/1 ] && echo agent visible", stdoutIs("2\n")},
		{"cannot write its code or the system", "touch /home/app/x /usr/x /etc/x 2>/dev/null && echo written", stdoutIs("")},
		{"cannot fork past its pids limit", "SPAWN 100", func(r probeReply) bool {
			var started, refused int
			_, err := fmt.Sscanf(r.Stdout, "%d started, %d refused", &started, &refused)
			return err == nil && started > 0 && started < 64 && started+refused == 100
		}},
	}
	for _, pr := range probes {
		r := p.probe("tenant", pr.cmd)
		if !pr.ok(r) {
			t.Errorf("%s: probe %q answered %+v", pr.name, pr.cmd, r)
		} else {
			t.Logf("%-55s ok: %q", pr.name, strings.TrimSpace(r.Stdout))
		}
	}

	// The first call was checkpointed; a worker restored from it keeps
	// every restriction.
	inspect := func() orchestrator.State {
		var st orchestrator.State
		if err := json.Unmarshal([]byte(p.must(200, "GET", "/system/pronghorn/functions/tenant", nil)), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor(t, "the tenant's checkpoint", func() bool { return inspect().Checkpoints == 1 })
	for inspect().Restores == 0 && inspect().FailedRestores == 0 {
		p.probe("tenant", "true") // up to the 20th call: the worker is evicted after it
	}
	if st := inspect(); st.Restores != 1 {
		t.Fatalf("no restore, with a connection to the outside held at the checkpoint: %+v", st)
	}
	r := p.probe("tenant", "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/$PPID/status | awk '{print $2}' | tr '\\n' ' '")
	if r.Stdout != "1000\n0000000000000000 1 2 " || r.Calls < 2 {
		t.Errorf("restored worker: %+v, want uid 1000, no capabilities, no_new_privs, seccomp, and the calls counted on from the snapshot", r)
	}

	// Past its memory limit the function is killed; the replica that
	// replaces it, the status and the logs say why.
	code, body := p.send("POST", "/function/tenant", rawBody("ALLOC 400"), false)
	if code == 200 {
		t.Errorf("allocating 400 MiB under a 128 MiB limit answered %d %s", code, body)
	}
	waitFor(t, "the replica killed at its memory limit to be replaced", func() bool {
		logs := p.must(200, "GET", "/system/logs?name=tenant&tail=50", nil)
		return strings.Contains(logs, "out of memory")
	})
	p.waitAvailable("tenant", 1)
	if st := p.status("tenant"); st.Annotations == nil || !strings.Contains((*st.Annotations)["com.pronghorn.last-replica-exit"], "out of memory") {
		t.Errorf("the status does not say the replica ran out of memory: %+v", st.Annotations)
	}
	if r := p.probe("victim", "cat /var/openfaas/secrets/victim-key"); r.Stdout != victimSecret {
		t.Errorf("the victim was disturbed: %+v", r)
	}
}

func stdoutIs(want string) func(probeReply) bool {
	return func(r probeReply) bool { return r.Stdout == want }
}
