package k8s

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Probes follow faas-netes (pkg/k8s/probes.go): a readiness and a liveness
// probe with the same handler, timings from the provider's settings,
// success threshold 1 and failure threshold 3.

// ProbeConfig holds one probe's timings, as faas-netes' k8s.ProbeConfig
// does.
type ProbeConfig struct {
	InitialDelaySeconds int32
	TimeoutSeconds      int32
	PeriodSeconds       int32
}

// DefaultProbeConfig is what faas-netes CE gives both probes: since June
// 2023 its main.go fixes them at these values and no longer reads
// readiness_probe_* or liveness_probe_* (its chart still sets them, and
// OpenFaaS Pro reads them; CE read them before, defaulting to 3s, 1s, 10s).
// We read them, with CE's values as defaults, so an unconfigured provider
// probes exactly as CE does.
func DefaultProbeConfig() ProbeConfig {
	return ProbeConfig{InitialDelaySeconds: 2, TimeoutSeconds: 1, PeriodSeconds: 2}
}

func (p ProbeConfig) check(which string) error {
	if p.InitialDelaySeconds < 0 || p.TimeoutSeconds < 1 || p.PeriodSeconds < 1 {
		return fmt.Errorf("kubernetes backend: %s probe %+v: the initial delay must be 0 or more seconds, timeout and period at least 1", which, p)
	}
	return nil
}

// The per-function probe annotations faas-netes honoured before CE dropped
// them in February 2022, and which OpenFaaS Pro and docs.openfaas.com
// ("Workloads") still document. CE ignores them today; honouring them
// changes nothing for a function that does not set them.
const (
	// ProbePathAnnotation makes the probes of a function without the agent
	// HTTP GETs of this path on the function's port, even when the
	// provider's http_probe is off.
	ProbePathAnnotation = "com.openfaas.health.http.path"
	// ProbeInitialDelayAnnotation is a Go duration ("5s") that replaces the
	// initial delay of both probes.
	ProbeInitialDelayAnnotation = "com.openfaas.health.http.initialDelay"
)

const (
	// healthPath is the watchdogs' health endpoint, which faas-netes probes
	// with http_probe on.
	healthPath = "/_/health"
	// lockFile is what faas-netes' exec probe reads with http_probe off:
	// the watchdogs write it once the function may take calls.
	lockFile = "/tmp/.lock"
	// maxProbeDelay bounds the initial delay annotation: far above any
	// function's start, far below an int32 of seconds.
	maxProbeDelay = 24 * time.Hour
)

// probes builds the function container's readiness and liveness probes.
//
// Without the agent they are faas-netes' own: an HTTP GET of /_/health on
// port 8080 (http_probe) or `cat /tmp/.lock`, or the path annotation's GET.
//
// With the agent, readiness is its /status on the control port, which
// answers 200 only once the function accepts connections (after a restore,
// once the restored process does), so a pod takes calls only when it can
// serve them. Liveness is a TCP connect to that port: the agent listens
// there from its first moment, before it starts or restores the function,
// and bounds the function's start itself (it exits, and the kubelet
// restarts the container, when the function dies or never listens within
// its ready timeout). An HTTP liveness probe on /status would instead kill
// every pod whose function takes longer to come up than initial delay +
// 3 periods (8s with CE's timings) — a JVM, or a restore that downloads a
// large snapshot — and crash-loop it. The timings, and the initial delay
// annotation, apply to both kinds of pod.
func (b *Backend) probes(req types.FunctionDeployment, agentless bool) (readiness, liveness *corev1.Probe, err error) {
	r, l := *b.cfg.ReadinessProbe, *b.cfg.LivenessProbe
	path := ""
	var annotations map[string]string
	if req.Annotations != nil {
		annotations = *req.Annotations
	}
	if v, ok := annotations[ProbePathAnnotation]; ok {
		if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " \t\r\n") {
			return nil, nil, fmt.Errorf("annotation %s=%q: want an absolute URL path such as /_/health: %w", ProbePathAnnotation, v, errdefs.ErrInvalid)
		}
		path = v
	}
	if v, ok := annotations[ProbeInitialDelayAnnotation]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxProbeDelay {
			return nil, nil, fmt.Errorf("annotation %s=%q: want a duration from 0s to %s, such as 5s: %w", ProbeInitialDelayAnnotation, v, maxProbeDelay, errdefs.ErrInvalid)
		}
		// Whole seconds, truncated, as faas-netes converted it.
		secs := int32(min(d.Seconds(), math.MaxInt32))
		r.InitialDelaySeconds, l.InitialDelaySeconds = secs, secs
	}

	var ready, live corev1.ProbeHandler
	switch {
	case !agentless:
		ready = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/status", Port: intstr.FromInt32(ControlPort), Scheme: corev1.URISchemeHTTP,
		}}
		live = corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(ControlPort)}}
	case b.cfg.HTTPProbe || path != "":
		if path == "" {
			path = healthPath
		}
		// Scheme left empty as faas-netes leaves it; the API server
		// defaults it to HTTP.
		ready = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(InvokePort)}}
		live = ready
	default:
		ready = corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", lockFile}}}
		live = ready
	}
	probe := func(h corev1.ProbeHandler, c ProbeConfig) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:        h,
			InitialDelaySeconds: c.InitialDelaySeconds,
			TimeoutSeconds:      c.TimeoutSeconds,
			PeriodSeconds:       c.PeriodSeconds,
			SuccessThreshold:    1,
			FailureThreshold:    3,
		}
	}
	return probe(ready, r), probe(live, l), nil
}
