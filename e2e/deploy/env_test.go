package deploy_test

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/lab"
)

// The chart is installed as release "meshtrust" in "meshtrust-system" for
// the RBAC tests, so the identity is the one `meshtrust vault enroll` binds
// by default.
const (
	release     = "meshtrust"
	releaseNS   = "meshtrust-system"
	saName      = "meshtrust-controller"
	saUser      = "system:serviceaccount:" + releaseNS + ":" + saName
	istioNS     = "istio-system"
	unrelatedNS = "unrelated"
	fieldOwner  = "meshtrust-e2e-deploy"
)

// Lab start-up is the dominant cost, so every lab test in the package
// shares one lab: Vault (dev mode) and one cluster. Its logs, the
// managers' included, are kept only for a failure.
var shared = lab.NewShared(lab.Options{IssuanceBackoff: 10 * time.Second})

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop(code)
	os.Exit(code)
}

// cluster starts the shared lab on first use and returns its cluster.
func cluster(t *testing.T) *lab.Cluster {
	t.Helper()
	return shared.Get(t).Clusters[0]
}

// apply server-side applies objs as a cluster administrator, creating the
// namespaces they live in first. No dry run: the objects are stored.
func apply(ctx context.Context, t *testing.T, c *lab.Cluster, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" {
			if err := c.EnsureNamespace(ctx, ns); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, o := range objs {
		if err := c.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			t.Fatalf("API server refused %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// impersonate returns a copy of the admin config that acts as the chart's
// ServiceAccount, with the groups the API server gives every
// ServiceAccount token, so RBAC decides exactly as it would for the pod.
func impersonate(c *lab.Cluster) *rest.Config {
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: saUser,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNS, "system:authenticated"},
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg
}

// ensureServiceAccount creates namespace/name as an administrator.
func ensureServiceAccount(ctx context.Context, t *testing.T, c *lab.Cluster, namespace, name string) {
	t.Helper()
	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := c.Client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func clientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
