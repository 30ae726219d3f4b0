package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pronghorn-openfaas/pronghorn/k8s"
)

// Settings from the cluster. Run as faas-netes by the upstream openfaas
// chart, the provider gets only faas-netes' environment variables, and the
// chart has no way to add others. Pronghorn's own settings (the snapshot
// store, strategy defaults, ...) then come from a ConfigMap and a Secret of
// conventional names in the provider's namespace, each key named as the
// setting's environment variable (snapshot_store, minio_endpoint,
// evict_after, ...). The Secret is for what must stay secret (store
// credentials); it wins over the ConfigMap where both name a key. An
// explicit flag or an environment variable wins over both, so our own chart
// and yaml/, which set everything in the environment, need neither.
//
// In the chart the provider also has no way to learn its own image, which
// function pods copy the agent from, or an address at which agents reach
// it; unless configured, both are read from its own Pod (selfPod).

const (
	// serviceAccountDir holds the in-cluster namespace file.
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// DefaultConfigMap and DefaultConfigSecret are the conventional names.
	defaultConfigMap    = "pronghorn-config"
	defaultConfigSecret = "pronghorn-store"
)

// refusedFromCluster reports the settings the cluster may not give: which
// backend and which cluster (decided before the ConfigMap can be read), and
// where the settings themselves come from.
func refusedFromCluster(key string) bool {
	switch key {
	case "backend", "KUBECONFIG", "config_map", "config_secret", "config_namespace":
		return true
	}
	return false
}

// clusterConfigOptions names the ConfigMap and Secret.
type clusterConfigOptions struct {
	configMap, secret, namespace string
}

func (c *clusterConfigOptions) flags(fs *pflag.FlagSet) {
	envString(fs, &c.configMap, "config-map", "config_map", defaultConfigMap,
		"kubernetes: ConfigMap in --config-namespace whose keys set any setting not given as a flag or in the environment, by its environment variable's name (empty: none)")
	envString(fs, &c.secret, "config-secret", "config_secret", defaultConfigSecret,
		"kubernetes: Secret read as --config-map is, winning over it; for store credentials (empty: none)")
	envString(fs, &c.namespace, "config-namespace", "config_namespace", "",
		"kubernetes: namespace of --config-map and --config-secret (default: the provider's own namespace when it runs in a pod; outside a cluster, none is read)")
}

// inClusterNamespace is the namespace of the pod the provider runs in, ""
// outside a pod.
func inClusterNamespace() string {
	b, err := os.ReadFile(path.Join(serviceAccountDir, "namespace"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// clusterSettings is what the ConfigMap and Secret say, by environment
// variable name, and where each value came from.
type clusterSettings struct {
	values  map[string]string
	sources map[string]string // key: "ConfigMap ns/name" or "Secret ns/name"
	secret  map[string]bool   // keys whose values must not be logged
}

// readClusterSettings reads the ConfigMap and the Secret. A missing one is
// no error (our own chart has neither), nor is one the provider may not
// read (a Role without it): both are logged. Any other failure is, since
// starting without the store the operator configured would quietly run
// every function cold.
func readClusterSettings(ctx context.Context, client kubernetes.Interface, c clusterConfigOptions, log *slog.Logger) (clusterSettings, error) {
	s := clusterSettings{values: map[string]string{}, sources: map[string]string{}, secret: map[string]bool{}}
	if c.namespace == "" {
		return s, nil
	}
	tolerate := func(what string, err error) error {
		switch {
		case apierrors.IsNotFound(err):
			log.Info("no cluster settings object", "object", what)
			return nil
		case apierrors.IsForbidden(err):
			log.Warn("may not read the cluster settings object; its settings are not applied", "object", what, "err", err)
			return nil
		}
		return fmt.Errorf("read %s: %w", what, err)
	}
	if c.configMap != "" {
		what := "ConfigMap " + c.namespace + "/" + c.configMap
		cm, err := client.CoreV1().ConfigMaps(c.namespace).Get(ctx, c.configMap, metav1.GetOptions{})
		if err != nil {
			if err := tolerate(what, err); err != nil {
				return s, err
			}
		} else {
			for k, v := range cm.Data {
				s.values[k], s.sources[k] = v, what
			}
		}
	}
	if c.secret != "" {
		what := "Secret " + c.namespace + "/" + c.secret
		sec, err := client.CoreV1().Secrets(c.namespace).Get(ctx, c.secret, metav1.GetOptions{})
		if err != nil {
			if err := tolerate(what, err); err != nil {
				return s, err
			}
		} else {
			for k, v := range sec.Data {
				s.values[k], s.sources[k], s.secret[k] = string(v), what, true
			}
		}
	}
	return s, nil
}

// apply sets, for each key, the flag whose environment variable it names,
// unless that flag was given or its variable is set. It returns the keys
// applied. Unknown keys are logged, not fatal (a setting of a newer
// version); a value the flag refuses is an error naming its source.
func (s clusterSettings) apply(fs *pflag.FlagSet, log *slog.Logger) ([]string, error) {
	byEnv := map[string]*pflag.Flag{}
	fs.VisitAll(func(f *pflag.Flag) {
		if env := flagEnv(f); env != "" {
			byEnv[env] = f
		}
	})
	keys := make([]string, 0, len(s.values))
	for k := range s.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var applied []string
	var errs []error
	for _, k := range keys {
		f := byEnv[k]
		switch {
		case refusedFromCluster(k):
			errs = append(errs, fmt.Errorf("%s: key %s: this setting cannot come from the cluster", s.sources[k], k))
			continue
		case f == nil:
			log.Warn("unknown setting ignored", "object", s.sources[k], "key", k)
			continue
		case f.Changed:
			log.Info("setting given as a flag; the cluster's value is not used", "object", s.sources[k], "key", k, "flag", "--"+f.Name)
			continue
		}
		if _, set := os.LookupEnv(k); set {
			log.Info("setting given in the environment; the cluster's value is not used", "object", s.sources[k], "key", k)
			continue
		}
		if err := fs.Set(f.Name, s.values[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s: key %s: %w", s.sources[k], k, err))
			continue
		}
		applied = append(applied, k)
	}
	return applied, errors.Join(errs...)
}

// selfInfo is what the provider learns from its own Pod.
type selfInfo struct {
	image, podIP string
}

// selfPod reads the provider's own Pod (name: its hostname, which is the
// pod's name unless the pod sets spec.hostname) and returns its image and
// IP. The image is that of the container running the provider: the one
// named faas-netes (the upstream chart's) or pronghorn (ours), else the one
// whose command runs either, else the pod's only container.
func selfPod(ctx context.Context, client kubernetes.Interface, namespace, name string) (selfInfo, error) {
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return selfInfo{}, fmt.Errorf("read own pod %s/%s: %w", namespace, name, err)
	}
	c := providerContainer(pod.Spec.Containers)
	if c == nil {
		return selfInfo{}, fmt.Errorf("own pod %s/%s: cannot tell which of its %d containers runs the provider", namespace, name, len(pod.Spec.Containers))
	}
	return selfInfo{image: c.Image, podIP: pod.Status.PodIP}, nil
}

func providerContainer(cs []corev1.Container) *corev1.Container {
	names := []string{"faas-netes", "pronghorn"}
	for _, want := range names {
		for i := range cs {
			if cs[i].Name == want {
				return &cs[i]
			}
		}
	}
	for i := range cs {
		for _, arg := range append(slices.Clone(cs[i].Command), cs[i].Args...) {
			if slices.Contains(names, path.Base(arg)) {
				return &cs[i]
			}
		}
	}
	if len(cs) == 1 {
		return &cs[0]
	}
	return nil
}

// loadClusterConfig applies the cluster's settings to fs (hence to o) and
// fills in the agent image and the provider's URL from the provider's own
// Pod when neither the flags, the environment nor the cluster's settings
// gave them. Only in kubernetes mode.
func loadClusterConfig(ctx context.Context, fs *pflag.FlagSet, o *providerOptions, log *slog.Logger) error {
	inCluster := inClusterNamespace()
	if o.clusterConfig.namespace == "" {
		o.clusterConfig.namespace = inCluster
	}
	if o.clusterConfig.namespace == "" {
		return nil // outside a cluster and no namespace named: the flags say it all
	}
	client, err := k8s.ClientFromEnvironment(o.kubeconfig)
	if err != nil {
		return err
	}
	settings, err := readClusterSettings(ctx, client, o.clusterConfig, log)
	if err != nil {
		return err
	}
	applied, err := settings.apply(fs, log)
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		// Names only: the Secret's values are credentials.
		log.Info("settings from the cluster", "namespace", o.clusterConfig.namespace, "keys", applied)
	}
	if inCluster == "" || (o.agentImage != "" && o.providerURL != "") {
		return nil
	}
	name, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("own pod name: %w", err)
	}
	self, err := selfPod(ctx, client, inCluster, name)
	if err != nil {
		if o.agentImage == "" {
			return fmt.Errorf("no agent image configured (agent_image) and %w", err)
		}
		log.Warn("no provider URL configured (provider_url) and cannot read the own pod; function pods start cold", "err", err)
		return nil
	}
	if o.agentImage == "" {
		o.agentImage = self.image
		log.Info("agent image: the provider's own", "agent_image", o.agentImage)
	}
	if o.providerURL == "" {
		// The kubelet may not have reported the pod's IP yet when its
		// container starts; the pod's own interface has it.
		ip := self.podIP
		if ip == "" {
			ip = interfaceIP()
		}
		if ip == "" {
			log.Warn("no provider_url configured and no pod IP known; function pods start cold")
			return nil
		}
		// Pods reach a pod IP in any cluster, DNS or not; but the URL is
		// written into every function's Deployment and goes stale when
		// this pod is replaced, so a Service name is the better setting.
		o.providerURL = "http://" + net.JoinHostPort(ip, strconv.Itoa(o.port))
		log.Warn("no provider_url configured: function pods reach the provider at its pod IP, which changes when the provider's pod is replaced; set provider_url to a Service's URL",
			"provider_url", o.providerURL)
	}
	return nil
}

// interfaceIP is the first IPv4 address of an interface that is up and not
// loopback: in a pod (without hostNetwork), the pod's IP.
func interfaceIP() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return ""
}
