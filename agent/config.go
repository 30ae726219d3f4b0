// Package agent is PID 1 of a worker: it starts the function process (or, with
// snapshots, restores it), proxies invocations to it inside the worker's
// network namespace, times each call, and answers the provider's control
// requests. The provider starts one agent per replica; in Kubernetes the agent
// is the container's entrypoint.
package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// Config is everything an agent needs to run one replica. The provider sends
// it on the agent's stdin so secrets never appear in argv or the environment
// of unrelated processes.
type Config struct {
	// Function is "name.namespace", used in log lines only.
	Function string `json:"function"`
	// Dir is the function's working directory.
	Dir string `json:"dir"`
	// Process is the function's command line (fprocess), split on white space
	// as the OpenFaaS watchdog does.
	Process string            `json:"process"`
	Env     map[string]string `json:"env,omitempty"`
	// Secrets are written as files under SecretsDir inside the worker's own
	// mount namespace, on a tmpfs, so they never touch the host's disk.
	Secrets    map[string][]byte `json:"secrets,omitempty"`
	SecretsDir string            `json:"secretsDir,omitempty"`

	// InvokeSocket and ControlSocket are unix socket paths (local mode);
	// InvokeAddr and ControlAddr are TCP addresses (Kubernetes). One of each
	// pair is set.
	InvokeSocket  string `json:"invokeSocket,omitempty"`
	ControlSocket string `json:"controlSocket,omitempty"`
	InvokeAddr    string `json:"invokeAddr,omitempty"`
	ControlAddr   string `json:"controlAddr,omitempty"`

	// ReadyTimeout bounds how long the function may take to accept connections.
	ReadyTimeout Duration `json:"readyTimeout,omitempty"`
	// Isolated is true when the agent runs in namespaces of its own and may
	// mount /proc, bring up loopback and pin the function's PID.
	Isolated bool `json:"isolated,omitempty"`
	// Sandbox, when set on an isolated agent, confines the function: a
	// private root, an unprivileged user, no capabilities, seccomp.
	Sandbox *SandboxConfig `json:"sandbox,omitempty"`

	// CRIUPath is the criu binary (or wrapper) used for checkpoints and
	// restores; empty means snapshot.DefaultCRIUPath.
	CRIUPath string `json:"criuPath,omitempty"`
	// RestoreDir, when set, holds verified, unpacked CRIU images to start
	// the function from instead of cold. If the restore fails the agent
	// starts the function cold and reports why in its status.
	RestoreDir string `json:"restoreDir,omitempty"`
	// CheckpointDrain bounds how long a checkpoint waits for the calls in
	// flight to finish (new calls wait meanwhile) before it gives up and
	// lets calls through again; default 2s.
	CheckpointDrain Duration `json:"checkpointDrain,omitempty"`

	// ProviderURL is set in a Kubernetes pod whose function takes part in
	// snapshots: before starting the function the agent asks it for a
	// StartPlan, and restores the snapshot the plan names, if any. The pod
	// proves who it is with the token in TokenFile. RestoreDir, when set,
	// wins and no plan is asked for.
	ProviderURL string `json:"providerURL,omitempty"`
	// TokenFile holds the pod's bearer token for the provider; default
	// /var/run/secrets/pronghorn/token.
	TokenFile string `json:"tokenFile,omitempty"`
	// PodName and PodNamespace name the pod in its plan request.
	PodName      string `json:"podName,omitempty"`
	PodNamespace string `json:"podNamespace,omitempty"`
	// WorkDir receives remote images while they are downloaded and
	// restored, and dumps while they are packed and uploaded; default the
	// system's temporary directory. It needs room for a dump and its packed
	// copy at once.
	WorkDir string `json:"workDir,omitempty"`
}

// Duration marshals as a Go duration string so configs stay readable.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

const (
	defaultUpstreamURL  = "http://127.0.0.1:5000"
	defaultSecretsDir   = "/var/openfaas/secrets"
	defaultReadyTimeout = 30 * time.Second
	// defaultCheckpointDrain is long enough for ordinary calls to finish and
	// short enough that calls arriving meanwhile barely notice.
	defaultCheckpointDrain = 2 * time.Second
	defaultTokenFile       = "/var/run/secrets/pronghorn/token"
)

// ReadConfig decodes and validates a Config.
func ReadConfig(r io.Reader) (Config, error) {
	var c Config
	if err := json.NewDecoder(r).Decode(&c); err != nil {
		return c, fmt.Errorf("decode agent config: %w", err)
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	if len(strings.Fields(c.Process)) == 0 {
		return fmt.Errorf("agent config: no function process")
	}
	if c.InvokeSocket == "" && c.InvokeAddr == "" {
		return fmt.Errorf("agent config: no invoke socket or address")
	}
	if c.ControlSocket == "" && c.ControlAddr == "" {
		return fmt.Errorf("agent config: no control socket or address")
	}
	if c.SecretsDir == "" {
		c.SecretsDir = defaultSecretsDir
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = Duration(defaultReadyTimeout)
	}
	if c.CheckpointDrain <= 0 {
		c.CheckpointDrain = Duration(defaultCheckpointDrain)
	}
	if _, err := c.upstream(); err != nil {
		return err
	}
	if c.Sandbox != nil {
		if err := c.Sandbox.validate(c.Isolated); err != nil {
			return err
		}
	}
	if c.ProviderURL != "" {
		u, err := url.Parse(c.ProviderURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("agent config: provider URL %q is not an absolute http(s) URL", c.ProviderURL)
		}
		if c.TokenFile == "" {
			c.TokenFile = defaultTokenFile
		}
	}
	return nil
}

// upstream is where the function listens: the upstream_url environment
// variable, as of-watchdog's http mode defines it.
func (c *Config) upstream() (*url.URL, error) {
	raw := c.Env["upstream_url"]
	if raw == "" {
		raw = defaultUpstreamURL
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("agent config: bad upstream_url %q", raw)
	}
	return u, nil
}
