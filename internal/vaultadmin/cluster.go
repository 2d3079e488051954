package vaultadmin

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// What enrol writes in the cluster: the token reviewer's ServiceAccount and
// its system:auth-delegator binding, and the AppRole secret-ID Secret.

var managedByMeshtrust = map[string]string{"app.kubernetes.io/managed-by": "meshtrust"}

// reviewerBinding names the stored reviewer's binding to
// system:auth-delegator.
func reviewerBinding(k KubernetesAuth) string { return k.ReviewerName + "-" + k.ReviewerNamespace }

// planReviewer plans the token reviewer: its namespace, ServiceAccount and
// binding to system:auth-delegator, each created when absent, and returns
// the function that mints its token (through the TokenRequest API, valid
// for ReviewerTTL; the API server may shorten it) at apply time and
// records the token's expiry and mount on the ServiceAccount.
func (p *EnrollPlan) planReviewer(ctx context.Context, cs kubernetes.Interface, k KubernetesAuth, mount string) (func(context.Context) (string, time.Time, error), error) {
	ns, name := k.ReviewerNamespace, k.ReviewerName
	nsExists, err := exists(cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}))
	if err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	saExists, err := exists(cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{}))
	if err != nil {
		return nil, fmt.Errorf("reading ServiceAccount %s/%s: %w", ns, name, err)
	}
	crbName := reviewerBinding(k)
	crbExists, err := exists(cs.RbacV1().ClusterRoleBindings().Get(ctx, crbName, metav1.GetOptions{}))
	if err != nil {
		return nil, fmt.Errorf("reading ClusterRoleBinding %s: %w", crbName, err)
	}
	saStep := "ServiceAccount " + ns + "/" + name
	if saExists {
		p.check(saStep, SystemKubernetes, "token reviewer already exists")
	} else {
		after := "created"
		if !nsExists {
			after = "created, with its namespace"
		}
		p.change(Step{Name: saStep, System: SystemKubernetes, Detail: "token reviewer " + after, Before: Absent, After: "ServiceAccount " + ns + "/" + name},
			func(ctx context.Context, _ *Step) error {
				if err := ensureNamespace(ctx, cs, ns); err != nil {
					return err
				}
				sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: managedByMeshtrust}}
				if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("creating ServiceAccount %s/%s: %w", ns, name, err)
				}
				return nil
			})
	}
	crbStep := "ClusterRoleBinding " + crbName
	if crbExists {
		p.check(crbStep, SystemKubernetes, "token reviewer already bound to system:auth-delegator")
	} else {
		p.change(Step{Name: crbStep, System: SystemKubernetes, Detail: "token reviewer bound to system:auth-delegator", Before: Absent,
			After: "ClusterRole system:auth-delegator to ServiceAccount " + ns + "/" + name},
			func(ctx context.Context, _ *Step) error {
				crb := &rbacv1.ClusterRoleBinding{
					ObjectMeta: metav1.ObjectMeta{Name: crbName, Labels: managedByMeshtrust},
					RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
					Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: name}},
				}
				if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("binding %s/%s to system:auth-delegator: %w", ns, name, err)
				}
				return nil
			})
	}
	return func(ctx context.Context) (string, time.Time, error) {
		seconds := int64(k.ReviewerTTL / time.Second)
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", time.Time{}, fmt.Errorf("requesting a token for %s/%s: %w", ns, name, err)
		}
		expires := tr.Status.ExpirationTimestamp.Time
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
			vaultcontract.ReviewerTokenExpiresAnnotation: expires.UTC().Format(time.RFC3339),
			vaultcontract.ReviewerTokenMountAnnotation:   mount,
		}}})
		if err != nil {
			return "", time.Time{}, err
		}
		if _, err := cs.CoreV1().ServiceAccounts(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return "", time.Time{}, fmt.Errorf("recording the reviewer token's expiry on ServiceAccount %s/%s: %w", ns, name, err)
		}
		return tr.Status.Token, expires, nil
	}, nil
}

// exists turns a Get into whether the object exists.
func exists[T any](_ T, err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, err
}

// ensureNamespace creates the namespace if needed.
func ensureNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// secretHasKey reports whether namespace/name exists with a non-empty key.
func secretHasKey(ctx context.Context, cs kubernetes.Interface, namespace, name, key string) (bool, error) {
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	return len(s.Data[key]) > 0, nil
}

// writeSecretKey creates or updates namespace/name so that key holds value.
func writeSecretKey(ctx context.Context, cs kubernetes.Interface, namespace, name, key string, value []byte) error {
	if err := ensureNamespace(ctx, cs, namespace); err != nil {
		return err
	}
	secrets := cs.CoreV1().Secrets(namespace)
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: managedByMeshtrust},
			Data: map[string][]byte{key: value}}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Secret %s/%s: %w", namespace, name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[key] = value
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating Secret %s/%s: %w", namespace, name, err)
	}
	return nil
}
