// Package funcspec is what a function deployment may ask for, and how it is
// read. The HTTP layer validates every deploy and update with it before a
// backend sees the request, and both backends read scale.min, scale.max and
// the namespace through it, so the two runtimes cannot drift apart on what a
// request means.
//
// Every number a client sends is bounded here: a value stored unchecked is
// read back on every restart, so a request that is merely odd today (replicas
// of 2^64-1, say) would otherwise become a crash loop tomorrow.
package funcspec

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/openfaas/faas-provider/types"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// DefaultMaxReplicas is the provider-wide replica ceiling when none is
// configured: enough for one machine running every replica as a process.
const DefaultMaxReplicas uint64 = 20

// DefaultNamespace is faas-netes' function namespace.
const DefaultNamespace = "openfaas-fn"

// The OpenFaaS scaling labels.
const (
	LabelScaleMin = "com.openfaas.scale.min"
	LabelScaleMax = "com.openfaas.scale.max"
)

// UpstreamURLEnv is of-watchdog's variable naming where the function itself
// listens; the agent proxies to it, so it must point inside the replica.
const UpstreamURLEnv = "upstream_url"

// MaxEntries bounds each of envVars, labels, annotations, secrets and
// constraints. The request body is size-limited already; this keeps a body
// of tiny entries from becoming thousands of files, env vars or volumes.
const MaxEntries = 1000

// Resource bounds: far above any single function's real need, far below
// the values that overflow a runtime's int64 arithmetic.
const (
	maxMemoryBytes = 1 << 40 // 1Ti
	maxCPUCores    = 1024
	maxGPUs        = 1024
)

// MinReplicas is the count a function starts with, with faas-netes CE's
// reading of com.openfaas.scale.min: a value that is not a positive integer
// is ignored and 1 is used. Validate refuses a numeric one above the
// function's maximum, so a stored label never asks for more than that.
func MinReplicas(labels map[string]string) uint64 {
	if v, ok := labels[LabelScaleMin]; ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return uint64(n)
		}
	}
	return 1
}

// MaxReplicas is the function's replica ceiling: com.openfaas.scale.max when
// set, which must be a whole number in 1..providerMax, else providerMax.
// providerMax 0 means DefaultMaxReplicas.
func MaxReplicas(labels map[string]string, providerMax uint64) (uint64, error) {
	providerMax = orDefault(providerMax)
	v, ok := labels[LabelScaleMax]
	if !ok {
		return providerMax, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n < 1 || n > providerMax {
		return 0, fmt.Errorf("%w: label %s=%q must be a whole number in 1..%d (the provider's maximum)", errdefs.ErrInvalid, LabelScaleMax, v, providerMax)
	}
	return n, nil
}

// CheckReplicas refuses a replica count above the function's MaxReplicas.
func CheckReplicas(n uint64, labels map[string]string, providerMax uint64) error {
	limit, err := MaxReplicas(labels, providerMax)
	if err != nil {
		return err
	}
	if n > limit {
		if _, ok := labels[LabelScaleMax]; ok {
			return fmt.Errorf("%w: replicas %d is more than %d, the function's label %s", errdefs.ErrInvalid, n, limit, LabelScaleMax)
		}
		return fmt.Errorf("%w: replicas %d is more than %d, the provider's maximum", errdefs.ErrInvalid, n, limit)
	}
	return nil
}

// Namespace is the namespace a request means: ns, else defaultNS, else
// DefaultNamespace.
func Namespace(ns, defaultNS string) string {
	switch {
	case ns != "":
		return ns
	case defaultNS != "":
		return defaultNS
	default:
		return DefaultNamespace
	}
}

// Validate checks everything in req that a backend would otherwise store
// and trip over later: the scaling labels, limits and requests,
// upstream_url, env var names and values, and the number of entries of each
// kind. Name and image rules are the HTTP layer's. Every error wraps
// errdefs.ErrInvalid and is one line naming the field and the value.
func Validate(req types.FunctionDeployment, providerMax uint64) error {
	var labels map[string]string
	if req.Labels != nil {
		labels = *req.Labels
	}
	var annotations map[string]string
	if req.Annotations != nil {
		annotations = *req.Annotations
	}
	for _, c := range []struct {
		field string
		n     int
	}{
		{"envVars", len(req.EnvVars)},
		{"labels", len(labels)},
		{"annotations", len(annotations)},
		{"secrets", len(req.Secrets)},
		{"constraints", len(req.Constraints)},
	} {
		if c.n > MaxEntries {
			return fmt.Errorf("%w: %s has %d entries, more than %d", errdefs.ErrInvalid, c.field, c.n, MaxEntries)
		}
	}

	limit, err := MaxReplicas(labels, providerMax)
	if err != nil {
		return err
	}
	if err := checkScaleMin(labels, limit); err != nil {
		return err
	}

	if err := checkResources(req.Limits, req.Requests); err != nil {
		return err
	}

	if strings.IndexByte(req.EnvProcess, 0) >= 0 {
		return fmt.Errorf("%w: envProcess %q contains a NUL byte", errdefs.ErrInvalid, req.EnvProcess)
	}
	// Sorted so that a request with several mistakes always names the same one.
	for _, k := range slices.Sorted(maps.Keys(req.EnvVars)) {
		v := req.EnvVars[k]
		switch {
		case k == "":
			return fmt.Errorf("%w: envVars has an empty name", errdefs.ErrInvalid)
		case strings.ContainsAny(k, "=\x00"):
			return fmt.Errorf("%w: envVars name %q contains '=' or a NUL byte", errdefs.ErrInvalid, k)
		case strings.IndexByte(v, 0) >= 0:
			return fmt.Errorf("%w: envVars[%q]=%q contains a NUL byte", errdefs.ErrInvalid, k, v)
		}
	}
	if v, ok := req.EnvVars[UpstreamURLEnv]; ok {
		if err := checkUpstreamURL(v); err != nil {
			return err
		}
	}
	return nil
}

func orDefault(providerMax uint64) uint64 {
	if providerMax == 0 {
		return DefaultMaxReplicas
	}
	return providerMax
}

// checkScaleMin refuses a numeric scale.min above the function's maximum,
// including one too large for an int: MinReplicas would ignore that one, but
// the client plainly asked for more replicas than allowed. A non-numeric or
// non-positive value stays accepted and ignored, as in faas-netes.
func checkScaleMin(labels map[string]string, limit uint64) error {
	v, ok := labels[LabelScaleMin]
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(v)
	var numErr *strconv.NumError
	tooLarge := errors.As(err, &numErr) && errors.Is(numErr.Err, strconv.ErrRange) && !strings.HasPrefix(v, "-")
	if tooLarge || (err == nil && n > 0 && uint64(n) > limit) {
		return fmt.Errorf("%w: label %s=%q is more than %d, the function's maximum replicas", errdefs.ErrInvalid, LabelScaleMin, v, limit)
	}
	return nil
}

// checkResources parses limits and requests as Kubernetes quantities, the
// form faas-netes takes them in, and bounds them.
func checkResources(limits, requests *types.FunctionResources) error {
	var lim, req types.FunctionResources
	if limits != nil {
		lim = *limits
	}
	if requests != nil {
		req = *requests
	}
	gpus := *resource.NewQuantity(maxGPUs, resource.DecimalSI)
	for _, f := range []struct {
		name       string
		lim, req   string
		max        resource.Quantity
		wholeUnits bool
	}{
		{"memory", lim.Memory, req.Memory, *resource.NewQuantity(maxMemoryBytes, resource.BinarySI), false},
		{"cpu", lim.CPU, req.CPU, *resource.NewQuantity(maxCPUCores, resource.DecimalSI), false},
		// Extended resources are counted devices: Kubernetes takes only
		// whole numbers, and 0 is a valid "none".
		{"nvidia.com/gpu", lim.NvidiaGPU, req.NvidiaGPU, gpus, true},
		{"amd.com/gpu", lim.AmdGPU, req.AmdGPU, gpus, true},
		{"intel.com/gpu", lim.IntelGPU, req.IntelGPU, gpus, true},
	} {
		l, err := quantity("limits."+f.name, f.lim, f.max, f.wholeUnits)
		if err != nil {
			return err
		}
		r, err := quantity("requests."+f.name, f.req, f.max, f.wholeUnits)
		if err != nil {
			return err
		}
		if l != nil && r != nil && r.Cmp(*l) > 0 {
			return fmt.Errorf("%w: requests.%s %q is more than limits.%s %q", errdefs.ErrInvalid, f.name, f.req, f.name, f.lim)
		}
	}
	return nil
}

// quantity parses one resource value; empty means unset (nil), as in
// faas-netes.
func quantity(field, v string, limit resource.Quantity, wholeUnits bool) (*resource.Quantity, error) {
	if v == "" {
		return nil, nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q is not a Kubernetes quantity", errdefs.ErrInvalid, field, v)
	}
	switch {
	case wholeUnits && q.Sign() < 0:
		return nil, fmt.Errorf("%w: %s %q is negative", errdefs.ErrInvalid, field, v)
	case !wholeUnits && q.Sign() <= 0:
		return nil, fmt.Errorf("%w: %s %q must be more than 0", errdefs.ErrInvalid, field, v)
	case q.Cmp(limit) > 0:
		return nil, fmt.Errorf("%w: %s %q is more than %s", errdefs.ErrInvalid, field, v, limit.String())
	case wholeUnits && q.MilliValue()%1000 != 0:
		return nil, fmt.Errorf("%w: %s %q is not a whole number", errdefs.ErrInvalid, field, v)
	}
	return &q, nil
}

// checkUpstreamURL accepts only where an of-watchdog function can listen
// from the agent's point of view: plain HTTP on the replica's own loopback,
// with the port spelled out since the agent does not guess one.
func checkUpstreamURL(v string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: envVars[%q]=%q %s", errdefs.ErrInvalid, UpstreamURLEnv, v, why)
	}
	u, err := url.Parse(v)
	if err != nil {
		return bad("is not a URL")
	}
	if u.Scheme != "http" {
		return bad("must be an http:// URL")
	}
	if u.User != nil {
		return bad("must not carry user information")
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" {
		return bad("must have host 127.0.0.1 or localhost")
	}
	port, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil || port == 0 {
		return bad("must have an explicit port in 1..65535")
	}
	return nil
}
