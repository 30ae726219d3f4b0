package k8s

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Namespaces. By default the provider behaves as faas-netes CE: it serves
// only its function namespace (function_namespace), lists only that one,
// and answers a request for any other with CE's 400 "namespace must be:
// <function_namespace>". With ClusterRole (faas-netes' cluster_role, which
// in OpenFaaS is a Pro feature) it also serves every namespace annotated
// openfaas: "1" that it has RBAC for.
//
// An API answer of 403 (no Role for the provider there) is never a 500:
// such a namespace is left out of the list, and a request in it gets a 404,
// as the provider can see no function there. (errdefs has no kind for 403.)

// namespaceAnnotation marks a namespace functions may be deployed to, as in
// faas-netes.
const namespaceAnnotation = "openfaas"

// systemNamespace is never served, annotated or not, as in faas-netes.
const systemNamespace = "kube-system"

// served checks that the provider serves namespace: the default one always;
// with ClusterRole also one annotated openfaas: "1". Each request outside
// the default namespace reads the Namespace, so an annotation removed takes
// effect at once (invocations excepted: their informers, once started, keep
// serving the functions they know).
func (b *Backend) served(ctx context.Context, namespace string) error {
	if namespace == b.cfg.DefaultNamespace {
		return nil
	}
	if !b.cfg.ClusterRole {
		// faas-netes CE's answer, word for word, then why.
		return fmt.Errorf("namespace must be: %s (this provider serves only its function namespace; "+
			"--cluster-role also serves namespaces annotated %s=\"1\"): %w", b.cfg.DefaultNamespace, namespaceAnnotation, errdefs.ErrInvalid)
	}
	if namespace == systemNamespace {
		return fmt.Errorf("namespace %s is never served: %w", namespace, errdefs.ErrInvalid)
	}
	ns, err := b.client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("namespace %s does not exist: %w", namespace, errdefs.ErrInvalid)
	case err != nil:
		return apiError(err, "namespace %s", namespace)
	case !annotated(ns):
		return fmt.Errorf("namespace %s is not annotated %s=\"1\": %w", namespace, namespaceAnnotation, errdefs.ErrInvalid)
	}
	return nil
}

// Namespaces lists the namespaces the provider serves. As faas-netes CE, only
// the default one unless ClusterRole; then also every namespace annotated
// openfaas: "1" in which the provider may list Deployments. A provider that
// may not list namespaces at all (a Role rather than a ClusterRole) offers
// the default one only, as faas-netes does.
func (b *Backend) Namespaces(ctx context.Context) ([]string, error) {
	if !b.cfg.ClusterRole {
		return []string{b.cfg.DefaultNamespace}, nil
	}
	list, err := b.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		if apierrors.IsForbidden(err) {
			b.log.Warn("cannot list namespaces; only the default one is offered", "namespace", b.cfg.DefaultNamespace, "err", err)
			return []string{b.cfg.DefaultNamespace}, nil
		}
		return nil, apiError(err, "list namespaces")
	}
	out := []string{b.cfg.DefaultNamespace}
	for i := range list.Items {
		ns := &list.Items[i]
		if ns.Name == b.cfg.DefaultNamespace || ns.Name == systemNamespace || !annotated(ns) {
			continue
		}
		ok, err := b.mayList(ctx, ns.Name)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ns.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// mayList reports whether the provider may list Deployments in namespace:
// an annotated namespace without a Role for the provider would otherwise be
// listed, and every call there fail. Asking the API for one Deployment
// tests exactly that permission, which every function call needs; a
// SelfSubjectAccessReview would cost the same round trip.
func (b *Backend) mayList(ctx context.Context, namespace string) (bool, error) {
	_, err := b.client.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{LabelSelector: functionLabel, Limit: 1})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsForbidden(err):
		b.mu.Lock()
		first := !b.hidden[namespace]
		b.hidden[namespace] = true
		b.mu.Unlock()
		if first {
			b.log.Warn("namespace is annotated for OpenFaaS but the provider has no RBAC there; it is not offered", "namespace", namespace, "err", err)
		}
		return false, nil
	default:
		return false, apiError(err, "list functions in %s", namespace)
	}
}

func annotated(ns *corev1.Namespace) bool {
	ok, _ := strconv.ParseBool(ns.Annotations[namespaceAnnotation])
	return ok && ns.DeletionTimestamp == nil
}
