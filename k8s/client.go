package k8s

import (
	"errors"
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ClientFromEnvironment connects to the cluster the provider runs in, or,
// given a kubeconfig path (development outside the cluster), to the one that
// file names. With neither, it falls back to clientcmd's usual lookup
// ($KUBECONFIG, ~/.kube/config) so `pronghorn provider --backend kubernetes`
// works on a laptop with kubectl set up.
func ClientFromEnvironment(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	switch {
	case kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
	default:
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				return nil, fmt.Errorf("not running in a cluster and no usable kubeconfig: %w", err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	}
	// client-go's defaults (5 QPS, burst 10) would throttle a provider that
	// deploys and scales many functions at once.
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "pronghorn-provider"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}
