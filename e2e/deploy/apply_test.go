package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/lab"
)

// TestChartAcceptedByAPIServer applies every object of every toggle, CRDs
// included, to a real API server with server-side apply. Server-side apply
// checks each field against the served schema, so a misspelt or misplaced
// field fails here, not at a user's install.
func TestChartAcceptedByAPIServer(t *testing.T) {
	c := cluster(t)
	ctx := testCtx(t, 2*time.Minute)
	installPrometheusOperatorCRDs(t, c)
	t.Run("a misplaced field is refused", func(t *testing.T) {
		// The premise of this test: the server, not a dry run, judges fields.
		objs := render(t, "accept-typo", "accept-typo")
		var dep *unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				dep = o.DeepCopy()
			}
		}
		if err := unstructured.SetNestedField(dep.Object, int64(1), "spec", "template", "spec", "replicas"); err != nil {
			t.Fatal(err)
		}
		if err := c.EnsureNamespace(ctx, dep.GetNamespace()); err != nil {
			t.Fatal(err)
		}
		err := c.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(dep), client.FieldOwner(fieldOwner), client.ForceOwnership)
		if err == nil || !strings.Contains(err.Error(), "replicas") {
			t.Fatalf("the API server accepted spec.template.spec.replicas: %v", err)
		}
	})
	for i, tg := range toggles {
		t.Run(tg.name, func(t *testing.T) {
			// Each toggle is its own release in its own namespace, so
			// cluster-scoped names do not collide and nothing is shared.
			rel := fmt.Sprintf("accept-%d", i)
			out, err := helm(t).Template(ctx, rel, rel, tg.set)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeObjects(out)
			if err != nil {
				t.Fatal(err)
			}
			apply(ctx, t, c, objs)
			for _, o := range objs {
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(o.GroupVersionKind())
				if err := c.Client.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
					t.Errorf("%s %s/%s not stored: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
				}
			}
		})
	}
}

// installPrometheusOperatorCRDs serves prometheus-operator's own
// ServiceMonitor and PrometheusRule CRDs, from the release pinned in
// e2e/tools/prometheus-operator/go.mod, so the API server checks the
// chart's objects against prometheus-operator's schemas.
func installPrometheusOperatorCRDs(t *testing.T, c *lab.Cluster) {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	// Nothing builds from this module, so on a fresh machine it is not in
	// the module cache yet: download it (go list -m would print no Dir).
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator")
	cmd.Dir = filepath.Join(helm(t).RepoRoot, "e2e", "tools", "prometheus-operator")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("downloading the prometheus-operator module (e2e/tools/prometheus-operator): %v: %s", err, out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("downloading the prometheus-operator module (e2e/tools/prometheus-operator): no module directory in %q (%v)", out, err)
	}
	dir := filepath.Join(mod.Dir, "example", "prometheus-operator-crd")
	var crds []*unstructured.Unstructured
	for _, name := range []string{"servicemonitors", "prometheusrules"} {
		data, err := os.ReadFile(filepath.Join(dir, "monitoring.coreos.com_"+name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeObjects(data)
		if err != nil || len(objs) != 1 {
			t.Fatalf("decoding the %s CRD: %d objects, %v", name, len(objs), err)
		}
		crds = append(crds, objs[0])
	}
	apply(ctx, t, c, crds)
	crdc := crdClient(t, c)
	for _, crd := range crds {
		lab.Eventually(t, 30*time.Second, crd.GetName()+" established", func(ctx context.Context) error {
			return crdEstablished(ctx, crdc, crd.GetName())
		})
		// The client's REST mapper learns about the new kind on its next miss.
		kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "listKind")
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		lab.Eventually(t, 30*time.Second, kind+" mapped", func(ctx context.Context) error {
			l := &unstructured.UnstructuredList{}
			l.SetGroupVersionKind(schema.GroupVersionKind{Group: group, Version: "v1", Kind: kind})
			return c.Client.List(ctx, l)
		})
	}
}

// crdClient reads and deletes CRDs as typed objects, which the lab's
// client scheme does not hold.
func crdClient(t *testing.T, c *lab.Cluster) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// crdEstablished says why the CRD name is not Established yet, or nil.
func crdEstablished(ctx context.Context, c client.Client, name string) error {
	got := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
		return err
	}
	for _, cond := range got.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("not established: %+v", got.Status.Conditions)
}
