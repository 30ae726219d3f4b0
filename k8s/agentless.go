package k8s

import (
	"fmt"
	"strconv"

	"github.com/openfaas/faas-provider/types"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// Functions without the agent. The agent starts the function from its
// fprocess; a deploy that names none anywhere the provider can see runs the
// image as faas-netes would (its own entrypoint, port 8080, faas-netes'
// probes) and never snapshots.

// AgentAnnotation says whether a function runs under the agent. The
// provider sets it to "false" on the Deployment and its pods of a function
// without the agent, so status shows it and inspect reports strategy cold.
// A deploy may set it itself: "false" runs the image's own entrypoint
// although the provider can see an fprocess; "true" runs the agent although
// it cannot, for an image whose `ENV fprocess` the agent then reads (an
// OpenFaaS template image). An image without one then fails to start, and
// its log says why: the deploy asked for that.
const AgentAnnotation = "com.pronghorn.agent"

// runsAgentless decides whether the function runs without the agent. The
// agent needs the function's command line; one that only the image's
// `ENV fprocess` holds is invisible to the provider, and an image without
// one would make the agent exit at once and crash-loop the pod. So unless
// the deploy says otherwise (AgentAnnotation), a function whose fprocess
// the provider cannot see runs its image's own entrypoint (an OpenFaaS
// template image's watchdog, or any image serving HTTP on 8080 itself),
// exactly as under faas-netes, and starts cold.
func runsAgentless(req types.FunctionDeployment, proc string) (bool, error) {
	v, set := "", false
	if req.Annotations != nil {
		v, set = (*req.Annotations)[AgentAnnotation]
	}
	if !set {
		return proc == "", nil
	}
	agent, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("annotation %s=%q: want true or false: %w", AgentAnnotation, v, errdefs.ErrInvalid)
	}
	return !agent, nil
}

// isAgentless reports whether a Deployment's pods run without the agent.
func isAgentless(d *appsv1.Deployment) bool {
	return d.Spec.Template.Annotations[AgentAnnotation] == "false"
}

// coldState is what inspecting a function without the agent reports: the
// strategy cold, with the other settings its annotations ask for, an empty
// pool and nothing learned. The engine has no record of such a function,
// since none of its pods ever asks for a plan.
func (b *Backend) coldState(d *appsv1.Deployment) coordinator.State {
	cfg := orchestrator.DefaultConfig()
	if b.cfg.Snapshots != nil {
		if c, err := b.cfg.Snapshots.EngineConfig(d.Spec.Template.Annotations); err == nil {
			cfg = c
		}
	}
	cfg.Strategy = orchestrator.StrategyCold
	return coordinator.State{State: orchestrator.State{Strategy: cfg.Strategy, Config: cfg, Pool: []orchestrator.PoolEntry{}}}
}
