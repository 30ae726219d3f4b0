package k8s

import (
	"fmt"
	"sort"
	"strings"

	"github.com/openfaas/faas-provider/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/funcspec"
)

// Names shared with faas-netes, so tools written for it (the gateway,
// faas-cli, dashboards) find our objects.
const (
	functionLabel    = "faas_function"
	scaleMinLabel    = funcspec.LabelScaleMin
	scrapeAnnotation = "prometheus.io.scrape"
	envProcess       = "fprocess"
	secretsMountPath = "/var/openfaas/secrets"
	// secretsVolumeSuffix names the projected volume "<function>-projected-secrets".
	secretsVolumeSuffix = "-projected-secrets"
	// uidLabel is the pod template label faas-netes' update sets to a new
	// value every time, so that every update rolls the pods: a rebuilt
	// image under the same tag (faas-cli up of :latest) is pulled and run
	// even when nothing else in the template changed.
	uidLabel = "uid"
	// tmpVolume is the writable /tmp of a read-only root filesystem.
	tmpVolume = "temp"
	// nonRootUser is the user set_nonroot_user runs functions as (faas-netes'
	// SecurityContextUserID).
	nonRootUser = int64(12000)
)

// ProcessAnnotation (or a label of that name) gives the function's command
// line when the deploy request has no envProcess, so stack.yml can carry it
// next to the image it belongs to.
const ProcessAnnotation = "com.pronghorn.fprocess"

// The worker pod layout, shared with agent.ConfigFromEnv.
const (
	// InvokePort is where the agent, or without it the image's own
	// watchdog, takes invocations; the Service exposes it.
	InvokePort = 8080
	// ControlPort is the agent's control API; its /status is the readiness probe.
	ControlPort = 8081

	agentVolume = "pronghorn-agent"
	agentDir    = "/pronghorn"
	// agentSource is the binary inside the provider's image.
	agentSource = "/usr/bin/pronghorn"

	envPrefix      = "PRONGHORN_"
	envFunction    = "PRONGHORN_FUNCTION"
	envProviderURL = "PRONGHORN_PROVIDER_URL"
)

// agentCommand is the function container's entrypoint: the agent, which
// starts the function's fprocess itself.
var agentCommand = []string{agentDir + "/pronghorn", "agent", "--from-env"}

// process picks the function's command line: envProcess, else an fprocess
// env var, else the pronghorn annotation or label.
func process(req types.FunctionDeployment) string {
	if p := strings.TrimSpace(req.EnvProcess); p != "" {
		return p
	}
	if p := strings.TrimSpace(req.EnvVars[envProcess]); p != "" {
		return p
	}
	if req.Annotations != nil {
		if p := strings.TrimSpace((*req.Annotations)[ProcessAnnotation]); p != "" {
			return p
		}
	}
	if req.Labels != nil {
		if p := strings.TrimSpace((*req.Labels)[ProcessAnnotation]); p != "" {
			return p
		}
	}
	return ""
}

// makeDeployment builds the function's Deployment. secrets holds every
// Secret the request names, already read from the cluster.
func (b *Backend) makeDeployment(req types.FunctionDeployment, secrets map[string]*corev1.Secret) (*appsv1.Deployment, error) {
	if req.Image == "" {
		return nil, fmt.Errorf("image is required: %w", errdefs.ErrInvalid)
	}
	proc := process(req)
	agentless, err := runsAgentless(req, proc)
	if err != nil {
		return nil, err
	}
	// The HTTP layer validated req already; checking again here keeps a
	// direct caller from storing a Deployment that asks for more replicas
	// than the provider allows, and makes the count below fit an int32.
	if err := funcspec.Validate(req, b.cfg.MaxReplicas); err != nil {
		return nil, err
	}
	replicas := initialReplicas(req.Labels)
	res, err := resources(req.Limits, req.Requests)
	if err != nil {
		return nil, err
	}
	nodeSelector, err := nodeSelector(req.Constraints)
	if err != nil {
		return nil, err
	}
	readiness, liveness, err := b.probes(req, agentless)
	if err != nil {
		return nil, err
	}

	podLabels := map[string]string{}
	if req.Labels != nil {
		for k, v := range *req.Labels {
			podLabels[k] = v
		}
	}
	podLabels[functionLabel] = req.Service
	annotations := buildAnnotations(req)
	if agentless {
		annotations[AgentAnnotation] = "false"
	}

	fn := corev1.Container{
		Name:            req.Service,
		Image:           req.Image,
		Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: InvokePort, Protocol: corev1.ProtocolTCP}},
		Resources:       res,
		ImagePullPolicy: corev1.PullPolicy(b.cfg.ImagePullPolicy),
		ReadinessProbe:  readiness,
		LivenessProbe:   liveness,
		SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: &req.ReadOnlyRootFilesystem},
	}
	var volumes []corev1.Volume
	var initContainers []corev1.Container
	if agentless {
		// The image's own entrypoint and environment, as faas-netes
		// deploys it: nothing of the agent's.
		fn.Env = envVars(req.EnvVars, proc)
	} else {
		fn.Command = agentCommand
		fn.Ports = append(fn.Ports, corev1.ContainerPort{Name: "control", ContainerPort: ControlPort, Protocol: corev1.ProtocolTCP})
		fn.Env = b.env(req, proc)
		fn.VolumeMounts = []corev1.VolumeMount{{Name: agentVolume, MountPath: agentDir, ReadOnly: true}}
		volumes = append(volumes, corev1.Volume{Name: agentVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		initContainers = []corev1.Container{{
			Name:    "pronghorn-agent",
			Image:   b.cfg.AgentImage,
			Command: []string{"cp", agentSource, agentDir + "/pronghorn"},
			// Empty pull policy: Kubernetes' default (Always for :latest,
			// else IfNotPresent) suits a versioned provider image.
			VolumeMounts: []corev1.VolumeMount{{Name: agentVolume, MountPath: agentDir}},
		}}
	}
	if req.ReadOnlyRootFilesystem {
		// As faas-netes: a read-only root still gets a writable /tmp.
		volumes = append(volumes, corev1.Volume{Name: tmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		fn.VolumeMounts = append(fn.VolumeMounts, corev1.VolumeMount{Name: tmpVolume, MountPath: "/tmp"})
	}
	// Only a function run by the agent can snapshot: without it nothing
	// would checkpoint or restore, so it gets neither privileges nor a token.
	snapshots := !agentless && b.snapshotsFor(req.Annotations)
	if snapshots {
		volumes = snapshotPod(&fn, volumes)
	}
	if b.cfg.SetNonRootUser {
		if snapshots {
			// CRIU restores and dumps as root in a privileged container;
			// running the agent (and so the function and criu) as 12000
			// there is not supported yet. The function keeps the image's
			// user; a function that must not run as root opts out of
			// snapshots with com.pronghorn.strategy=cold.
			b.rootWarning.Do(func() {
				b.log.Warn("set_nonroot_user does not apply to functions that snapshot: CRIU needs root in their privileged container; "+
					"deploy with com.pronghorn.strategy=cold (or --strategy cold) to run a function as user 12000",
					"function", req.Service+"."+req.Namespace)
			})
		} else {
			fn.SecurityContext.RunAsUser = ptr(nonRootUser)
		}
	}
	var pullSecrets []corev1.LocalObjectReference
	var projections []corev1.VolumeProjection
	for _, name := range req.Secrets {
		s := secrets[name]
		switch s.Type {
		case corev1.SecretTypeDockercfg, corev1.SecretTypeDockerConfigJson:
			// Registry credentials pull the image rather than being files.
			pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: name})
		default:
			keys := make([]string, 0, len(s.Data))
			for k := range s.Data {
				keys = append(keys, k)
			}
			// Sorted, so the template is a function of the request alone.
			sort.Strings(keys)
			items := make([]corev1.KeyToPath, 0, len(keys))
			for _, k := range keys {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
			projections = append(projections, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: name}, Items: items,
			}})
		}
	}
	if len(projections) > 0 {
		vol := req.Service + secretsVolumeSuffix
		volumes = append(volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{
			Projected: &corev1.ProjectedVolumeSource{Sources: projections},
		}})
		fn.VolumeMounts = append(fn.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: secretsMountPath, ReadOnly: true})
	}

	falseVal := false
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: req.Service, Namespace: req.Namespace,
			Labels:      map[string]string{functionLabel: req.Service},
			Annotations: annotations,
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{functionLabel: req.Service}},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				// Never fewer ready pods than asked for during an update:
				// a new pod must pass its readiness probe before an old
				// one goes.
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr(intstr.FromInt32(0)),
					MaxSurge:       ptr(intstr.FromInt32(1)),
				},
			},
			RevisionHistoryLimit: ptr(int32(5)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: annotations},
				Spec: corev1.PodSpec{
					InitContainers:   initContainers,
					Containers:       []corev1.Container{fn},
					Volumes:          volumes,
					ImagePullSecrets: pullSecrets,
					NodeSelector:     nodeSelector,
					RestartPolicy:    corev1.RestartPolicyAlways,
					DNSPolicy:        corev1.DNSClusterFirst,
					// Functions do not talk to the API server, and a
					// namespace with hundreds of Services would otherwise
					// hand every pod thousands of *_SERVICE_HOST variables.
					AutomountServiceAccountToken: &falseVal,
					EnableServiceLinks:           &falseVal,
				},
			},
		},
	}, nil
}

// env is the function container's environment under the agent: the
// request's envVars, the fprocess, and what the agent needs to know about
// its function.
func (b *Backend) env(req types.FunctionDeployment, proc string) []corev1.EnvVar {
	extra := map[string]string{envFunction: req.Service + "." + req.Namespace}
	if b.cfg.ProviderURL != "" {
		extra[envProviderURL] = b.cfg.ProviderURL
	}
	return envVars(req.EnvVars, proc, extra)
}

// envVars is env with fprocess set to proc (when there is one) and the
// extra variables, sorted by name as faas-netes sorts them, so the template
// is a function of the request alone.
func envVars(env map[string]string, proc string, extra ...map[string]string) []corev1.EnvVar {
	vars := map[string]string{}
	for k, v := range env {
		vars[k] = v
	}
	if proc != "" {
		vars[envProcess] = proc
	}
	for _, m := range extra {
		for k, v := range m {
			vars[k] = v
		}
	}
	out := make([]corev1.EnvVar, 0, len(vars))
	for k, v := range vars {
		out = append(out, corev1.EnvVar{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func buildAnnotations(req types.FunctionDeployment) map[string]string {
	out := map[string]string{}
	if req.Annotations != nil {
		for k, v := range *req.Annotations {
			out[k] = v
		}
	}
	// faas-netes' default: the gateway, not Prometheus, reports on functions.
	if _, ok := out[scrapeAnnotation]; !ok {
		out[scrapeAnnotation] = "false"
	}
	return out
}

// initialReplicas is com.openfaas.scale.min read as faas-netes reads it.
// Validate has bounded it by the function's maximum, which setDefaults
// keeps within an int32.
func initialReplicas(labels *map[string]string) int32 {
	if labels == nil {
		return 1
	}
	return int32(funcspec.MinReplicas(*labels))
}

// resources maps limits and requests to Kubernetes quantities; anything
// that does not parse is the client's mistake (400), not the cluster's.
func resources(limits, requests *types.FunctionResources) (corev1.ResourceRequirements, error) {
	var out corev1.ResourceRequirements
	var err error
	if out.Limits, err = resourceList("limits", limits); err != nil {
		return out, err
	}
	if out.Requests, err = resourceList("requests", requests); err != nil {
		return out, err
	}
	return out, nil
}

func resourceList(what string, r *types.FunctionResources) (corev1.ResourceList, error) {
	if r == nil {
		return nil, nil
	}
	list := corev1.ResourceList{}
	for _, f := range []struct {
		name  corev1.ResourceName
		value string
	}{
		{corev1.ResourceMemory, r.Memory},
		{corev1.ResourceCPU, r.CPU},
		{"nvidia.com/gpu", r.NvidiaGPU},
		{"amd.com/gpu", r.AmdGPU},
		{"intel.com/gpu", r.IntelGPU},
	} {
		if f.value == "" {
			continue
		}
		q, err := resource.ParseQuantity(f.value)
		if err != nil {
			return nil, fmt.Errorf("%s.%s %q is not a quantity: %w", what, f.name, f.value, errdefs.ErrInvalid)
		}
		if q.Sign() < 0 {
			return nil, fmt.Errorf("%s.%s %q is negative: %w", what, f.name, f.value, errdefs.ErrInvalid)
		}
		list[f.name] = q
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

// nodeSelector turns constraints ("key=value" or faas-swarm's
// "key == value") into a node selector, as faas-netes does.
func nodeSelector(constraints []string) (map[string]string, error) {
	if len(constraints) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(constraints))
	for _, c := range constraints {
		c = strings.Replace(c, "==", "=", 1)
		k, v, ok := strings.Cut(c, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("constraint %q is not key=value: %w", c, errdefs.ErrInvalid)
		}
		out[k] = v
	}
	return out, nil
}

func makeService(req types.FunctionDeployment) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: req.Service, Namespace: req.Namespace,
			Labels:      map[string]string{functionLabel: req.Service},
			Annotations: buildAnnotations(req),
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{functionLabel: req.Service},
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP,
				Port: InvokePort, TargetPort: intstr.FromInt32(InvokePort),
			}},
		},
	}
}

// status reads a function's description back from its Deployment: the
// inverse of makeDeployment, minus what the provider added itself.
func (b *Backend) status(d *appsv1.Deployment) types.FunctionStatus {
	st := types.FunctionStatus{
		Name:              d.Name,
		Namespace:         d.Namespace,
		AvailableReplicas: uint64(max(d.Status.AvailableReplicas, 0)),
		CreatedAt:         d.CreationTimestamp.Time,
		InvocationCount:   b.invocations(d.Namespace, d.Name),
	}
	st.Replicas = 1
	if d.Spec.Replicas != nil {
		st.Replicas = uint64(max(*d.Spec.Replicas, 0))
	}
	tmpl := d.Spec.Template
	// faas_function and uid are the provider's own, not the request's.
	if labels := withoutKey(withoutKey(tmpl.Labels, functionLabel), uidLabel); len(labels) > 0 {
		st.Labels = &labels
	}
	if len(tmpl.Annotations) > 0 {
		annotations := withoutKey(tmpl.Annotations, "")
		st.Annotations = &annotations
	}
	for k, v := range tmpl.Spec.NodeSelector {
		st.Constraints = append(st.Constraints, k+"="+v)
	}
	sort.Strings(st.Constraints)
	for _, s := range tmpl.Spec.ImagePullSecrets {
		st.Secrets = append(st.Secrets, s.Name)
	}
	for _, v := range tmpl.Spec.Volumes {
		if v.Name != d.Name+secretsVolumeSuffix || v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret != nil {
				st.Secrets = append(st.Secrets, src.Secret.Name)
			}
		}
	}
	sort.Strings(st.Secrets)

	c := functionContainer(&tmpl.Spec, d.Name)
	if c == nil {
		return st
	}
	st.Image = c.Image
	for _, e := range c.Env {
		switch {
		case e.Name == envProcess:
			st.EnvProcess = e.Value
		case strings.HasPrefix(e.Name, envPrefix):
		default:
			if st.EnvVars == nil {
				st.EnvVars = map[string]string{}
			}
			st.EnvVars[e.Name] = e.Value
		}
	}
	st.Limits = functionResources(c.Resources.Limits)
	st.Requests = functionResources(c.Resources.Requests)
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil {
		st.ReadOnlyRootFilesystem = *sc.ReadOnlyRootFilesystem
	}
	return st
}

func functionContainer(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

func functionResources(list corev1.ResourceList) *types.FunctionResources {
	if len(list) == 0 {
		return nil
	}
	get := func(n corev1.ResourceName) string {
		if q, ok := list[n]; ok {
			return q.String()
		}
		return ""
	}
	return &types.FunctionResources{
		Memory: get(corev1.ResourceMemory), CPU: get(corev1.ResourceCPU),
		NvidiaGPU: get("nvidia.com/gpu"), AmdGPU: get("amd.com/gpu"), IntelGPU: get("intel.com/gpu"),
	}
}

// withoutKey copies m without key, so status never aliases the cached object.
func withoutKey(m map[string]string, key string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }
