package deploy_test

import (
	"context"
	"fmt"
	"os"
	"sync"
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
// shares one lab: Vault (dev mode) and one cluster.
var (
	labOnce   sync.Once
	sharedLab *lab.Lab
	labErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedLab != nil {
		if err := sharedLab.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping lab: %v\n", err)
		}
		// Logs (the lab's and the managers') are kept only for a failure.
		if code == 0 {
			os.RemoveAll(sharedLab.Dir)
		} else {
			fmt.Fprintf(os.Stderr, "lab and controller logs kept in %s\n", sharedLab.Dir)
		}
	}
	os.Exit(code)
}

// cluster starts the shared lab on first use and returns its cluster.
func cluster(t *testing.T) *lab.Cluster {
	t.Helper()
	labOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshtrust-deploy-e2e-")
		if err != nil {
			labErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		sharedLab, labErr = lab.Start(ctx, lab.Options{Dir: dir, IssuanceBackoff: 10 * time.Second})
		if labErr != nil {
			labErr = fmt.Errorf("starting lab (logs in %s): %w", dir, labErr)
		}
	})
	if labErr != nil {
		t.Fatal(labErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab logs in %s", sharedLab.Dir)
		}
	})
	return sharedLab.Clusters[0]
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
