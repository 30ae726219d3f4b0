package agent

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Environment variables of a Kubernetes worker pod. The provider sets
// fprocess and PRONGHORN_FUNCTION in the function container; the rest have
// defaults that match the pod the provider builds.
const (
	envProcess      = "fprocess"
	envPrefix       = "PRONGHORN_"
	envFunction     = "PRONGHORN_FUNCTION"
	envFunctionDir  = "PRONGHORN_FUNCTION_DIR"
	envInvokeAddr   = "PRONGHORN_INVOKE_ADDR"
	envControlAddr  = "PRONGHORN_CONTROL_ADDR"
	envSecretsDir   = "PRONGHORN_SECRETS_DIR"
	envReadyTimeout = "PRONGHORN_READY_TIMEOUT"
	envDrain        = "PRONGHORN_CHECKPOINT_DRAIN"
	envProviderURL  = "PRONGHORN_PROVIDER_URL"
	envTokenFile    = "PRONGHORN_TOKEN_FILE"
	envPodName      = "PRONGHORN_POD_NAME"
	envPodNamespace = "PRONGHORN_POD_NAMESPACE"
	envWorkDir      = "PRONGHORN_WORK_DIR"

	defaultInvokeAddr  = ":8080"
	defaultControlAddr = ":8081"
)

// ConfigFromEnv builds the Config of an agent that is a Kubernetes
// container's entrypoint (`pronghorn agent --from-env`) from its environment,
// given as os.Environ() does.
//
// It takes the whole environment rather than a getenv function because the
// function must inherit all of it — the image's ENV (PATH, upstream_url,
// its own fprocess), envVars from the deploy request, what Kubernetes adds —
// and only a list can be enumerated. PRONGHORN_* variables configure the
// agent and are not passed on.
//
// Dir stays empty unless PRONGHORN_FUNCTION_DIR is set: the function then
// starts in the agent's own working directory, which is the image's WORKDIR,
// just as the OpenFaaS watchdog would start it. Isolated stays false: the
// pod already gives the worker its own namespaces, and the agent must not
// remount /proc or touch the network there.
//
// PRONGHORN_PROVIDER_URL turns snapshots on for the pod: the agent asks the
// provider for its start plan (authenticated by PRONGHORN_TOKEN_FILE, the
// pod named by PRONGHORN_POD_NAME and PRONGHORN_POD_NAMESPACE from the
// downward API) and, as the pod's PID 1, pins the function's PID as an
// isolated worker does, so its snapshots restore in any other pod.
// PRONGHORN_WORK_DIR is where images are downloaded and dumps packed
// (default: the system's temporary directory).
func ConfigFromEnv(environ []string) (Config, error) {
	env := make(map[string]string, len(environ))
	own := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		// Later entries win, as with getenv on a duplicated variable.
		if strings.HasPrefix(k, envPrefix) {
			own[k] = v
			continue
		}
		env[k] = v
	}
	c := Config{
		Function:    own[envFunction],
		Dir:         own[envFunctionDir],
		Process:     strings.TrimSpace(env[envProcess]),
		Env:         env,
		SecretsDir:  own[envSecretsDir],
		InvokeAddr:  orDefault(own[envInvokeAddr], defaultInvokeAddr),
		ControlAddr: orDefault(own[envControlAddr], defaultControlAddr),

		ProviderURL:  strings.TrimSpace(own[envProviderURL]),
		TokenFile:    own[envTokenFile],
		PodName:      own[envPodName],
		PodNamespace: own[envPodNamespace],
		WorkDir:      own[envWorkDir],
	}
	if c.Process == "" {
		return c, fmt.Errorf("agent config from env: %s is not set: the function's command line is required", envProcess)
	}
	if v := own[envReadyTimeout]; v != "" {
		d, err := parseEnvDuration(v)
		if err != nil {
			return c, fmt.Errorf("agent config from env: %s=%q: %w", envReadyTimeout, v, err)
		}
		c.ReadyTimeout = Duration(d)
	}
	if v := own[envDrain]; v != "" {
		d, err := parseEnvDuration(v)
		if err != nil {
			return c, fmt.Errorf("agent config from env: %s=%q: %w", envDrain, v, err)
		}
		c.CheckpointDrain = Duration(d)
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	return c, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// parseEnvDuration accepts a Go duration or, like the provider's flags, a
// bare number of seconds.
func parseEnvDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("must be positive")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration")
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	return d, nil
}
