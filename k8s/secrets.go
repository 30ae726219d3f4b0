package k8s

import (
	"context"
	"fmt"
	"sort"

	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Secrets are Kubernetes Secrets carrying faas-netes' label, with one key
// named after the secret, so secrets created by either provider work with
// the other. Only Secrets with the label are listed, changed or deleted:
// the provider must not touch other Secrets that share the namespace.
const (
	managedByLabel = "app.kubernetes.io/managed-by"
	managedByValue = "openfaas"
)

// functionSecrets reads the Secrets a function names. A missing one fails
// the deploy with 400, like the local backend: the pod could never start.
func (b *Backend) functionSecrets(ctx context.Context, namespace string, names []string) (map[string]*corev1.Secret, error) {
	out := make(map[string]*corev1.Secret, len(names))
	for _, name := range names {
		if _, dup := out[name]; dup {
			continue
		}
		s, err := b.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("secret %q not found in namespace %s: %w", name, namespace, errdefs.ErrInvalid)
		}
		if err != nil {
			return nil, apiError(err, "read secret %s.%s", name, namespace)
		}
		out[name] = s
	}
	return out, nil
}

// Secrets lists the names of the namespace's function secrets.
func (b *Backend) Secrets(ctx context.Context, namespace string) ([]types.Secret, error) {
	namespace = b.namespace(namespace)
	if err := b.served(ctx, namespace); err != nil {
		return nil, err
	}
	list, err := b.client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: managedByLabel + "=" + managedByValue})
	if err != nil {
		return nil, apiError(err, "list secrets in %s", namespace)
	}
	out := make([]types.Secret, 0, len(list.Items))
	for _, s := range list.Items {
		out = append(out, types.Secret{Name: s.Name, Namespace: namespace})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func secretData(s types.Secret) map[string][]byte {
	if len(s.RawValue) > 0 {
		return map[string][]byte{s.Name: s.RawValue}
	}
	return map[string][]byte{s.Name: []byte(s.Value)}
}

// CreateSecret creates a labelled Opaque Secret; 409 when one of that name
// exists, labelled or not.
func (b *Backend) CreateSecret(ctx context.Context, s types.Secret) error {
	s.Namespace = b.namespace(s.Namespace)
	if err := b.served(ctx, s.Namespace); err != nil {
		return err
	}
	_, err := b.client.CoreV1().Secrets(s.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace,
			Labels: map[string]string{managedByLabel: managedByValue},
		},
		Type: corev1.SecretTypeOpaque,
		Data: secretData(s),
	}, metav1.CreateOptions{})
	if err != nil {
		return apiError(err, "create secret %s.%s", s.Name, s.Namespace)
	}
	b.log.Info("secret created", "secret", s.Name+"."+s.Namespace)
	return nil
}

// UpdateSecret replaces a function secret's value. Running pods see the new
// file once the kubelet syncs the projected volume; nothing restarts.
func (b *Backend) UpdateSecret(ctx context.Context, s types.Secret) error {
	s.Namespace = b.namespace(s.Namespace)
	if err := b.served(ctx, s.Namespace); err != nil {
		return err
	}
	secrets := b.client.CoreV1().Secrets(s.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := b.managedSecret(ctx, s.Namespace, s.Name)
		if err != nil {
			return err
		}
		cur.Data = secretData(s)
		cur.StringData = nil
		_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return apiError(err, "update secret %s.%s", s.Name, s.Namespace)
	}
	b.log.Info("secret updated", "secret", s.Name+"."+s.Namespace)
	return nil
}

// DeleteSecret deletes a function secret; 404 when it is absent or not one
// of ours.
func (b *Backend) DeleteSecret(ctx context.Context, namespace, name string) error {
	namespace = b.namespace(namespace)
	if err := b.served(ctx, namespace); err != nil {
		return err
	}
	cur, err := b.managedSecret(ctx, namespace, name)
	if err != nil {
		return apiError(err, "delete secret %s.%s", name, namespace)
	}
	err = b.client.CoreV1().Secrets(namespace).Delete(ctx, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &cur.UID},
	})
	if err != nil {
		return apiError(err, "delete secret %s.%s", name, namespace)
	}
	b.log.Info("secret deleted", "secret", name+"."+namespace)
	return nil
}

func (b *Backend) managedSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	s, err := b.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if s.Labels[managedByLabel] != managedByValue {
		return nil, fmt.Errorf("secret %s.%s is not a function secret (no %s=%s label): %w",
			name, namespace, managedByLabel, managedByValue, errdefs.ErrNotFound)
	}
	return s, nil
}
