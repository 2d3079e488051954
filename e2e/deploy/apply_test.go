package deploy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
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
	installServiceMonitorCRD(t, c)
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
			out, err := helm(t).Template(ctx, rel, rel, tg.set, "--include-crds")
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

// installServiceMonitorCRD serves monitoring.coreos.com/v1 ServiceMonitor
// with an open schema. prometheus-operator's own CRD is not available
// here, so this proves the object has the right group, version, kind and
// scope, not that prometheus-operator accepts every field; the render test
// checks that it selects the metrics Service.
func installServiceMonitorCRD(t *testing.T, c *lab.Cluster) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	crd := &apiextensionsv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: "servicemonitors.monitoring.coreos.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "servicemonitors", Singular: "servicemonitor", Kind: "ServiceMonitor", ListKind: "ServiceMonitorList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", XPreserveUnknownFields: ptr.To(true)},
					},
				}},
			}},
		},
	}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: raw}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	apply(ctx, t, c, []*unstructured.Unstructured{u})
	lab.Eventually(t, 30*time.Second, "ServiceMonitor CRD established", func(ctx context.Context) error {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(crd.GroupVersionKind())
		if err := c.Client.Get(ctx, client.ObjectKey{Name: crd.Name}, got); err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, cond := range conds {
			m, _ := cond.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("not established: %v", conds)
	})
	// The client's REST mapper learns about the new kind on its next miss.
	lab.Eventually(t, 30*time.Second, "ServiceMonitor kind mapped", func(ctx context.Context) error {
		l := &unstructured.UnstructuredList{}
		l.SetGroupVersionKind(schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitorList"})
		return c.Client.List(ctx, l)
	})
}
