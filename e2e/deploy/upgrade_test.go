package deploy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/deploy"
	"github.com/meshtrust/meshtrust/e2e/lab"
)

// previousChart is meshtrust 0.1.0's chart, with its CRDs in crds/ and
// without spec.caBundleSecretRef (testdata/README.md).
const previousChart = "e2e/deploy/testdata/meshtrust-0.1.0"

// TestUpgradeFromPreviousChart runs what deploy/README.md tells an operator
// to do, with the real helm binary on a lab API server: install the
// previous chart, upgrade to this one (taking ownership of the CRDs the
// previous chart's crds/ created), upgrade again, uninstall, install again.
// It shows the CRDs change on upgrade, which Helm never does for crds/, and
// that uninstalling keeps them and every issuer, unless crds.keep is off.
func TestUpgradeFromPreviousChart(t *testing.T) {
	// A lab of its own: the shared one (and every lab) serves today's CRDs
	// from the start, and the previous chart must install its own.
	ctx := testCtx(t, 10*time.Minute)
	l := lab.New(t, lab.Options{Vault: lab.VaultNone, NoCertManager: true})
	c := l.Clusters[0]
	crdc := crdClient(t, c)
	for _, name := range []string{"vaultissuers.meshtrust.io", "vaultclusterissuers.meshtrust.io"} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		crd.Name = name
		if err := crdc.Delete(ctx, crd); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, time.Minute, name+" deleted", func(ctx context.Context) error {
			if err := crdc.Get(ctx, client.ObjectKey{Name: name}, &apiextensionsv1.CustomResourceDefinition{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %v", err)
			}
			return nil
		})
	}
	if err := c.EnsureNamespace(ctx, istioNS); err != nil {
		t.Fatal(err)
	}
	h := helm(t)
	run := func(args ...string) (string, error) {
		out, err := h.Run(ctx, append(args, "--kubeconfig", c.KubeconfigPath, "--namespace", releaseNS)...)
		return string(out), err
	}
	mustRun := func(args ...string) {
		t.Helper()
		if out, err := run(args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	const crdName = "vaultclusterissuers.meshtrust.io"

	t.Log("helm install the previous chart")
	mustRun("install", release, previousChart, "--create-namespace")
	waitServed(t, crdc, crdName, false)
	if err := createIssuer(ctx, c, "kept", false); err != nil {
		t.Fatalf("an issuer the previous CRD allows: %v", err)
	}
	if err := createIssuer(ctx, c, "new-field", true); err == nil || !strings.Contains(err.Error(), "caBundleSecretRef") {
		t.Fatalf("the previous CRD accepted spec.caBundleSecretRef (err %v): the test would prove nothing", err)
	}

	t.Log("helm upgrade without taking ownership of the CRDs: refused, nothing changes")
	out, err := run("upgrade", release, deploy.ChartDir)
	if err == nil || !strings.Contains(err.Error(), "invalid ownership metadata") || !strings.Contains(err.Error(), "CustomResourceDefinition") {
		t.Fatalf("upgrade over crds/-installed CRDs: %v\n%s\nwant Helm's refusal to adopt them", err, out)
	}
	waitServed(t, crdc, crdName, false)

	t.Log("helm upgrade --take-ownership: the CRDs become the release's and change")
	mustRun("upgrade", release, deploy.ChartDir, "--take-ownership")
	crd := waitServed(t, crdc, crdName, true)
	if crd.Annotations["helm.sh/resource-policy"] != "keep" || crd.Annotations["meta.helm.sh/release-name"] != release {
		t.Errorf("CRD annotations after the upgrade: %v", crd.Annotations)
	}
	if err := createIssuer(ctx, c, "new-field", true); err != nil {
		t.Fatalf("the upgraded CRD refuses spec.caBundleSecretRef: %v", err)
	}
	assertIssuers(ctx, t, c, "kept", "new-field")

	t.Log("plain helm upgrades now reach the CRDs: crds.keep=false, then back")
	mustRun("upgrade", release, deploy.ChartDir, "--set", "crds.keep=false")
	if _, ok := getCRD(ctx, t, crdc, crdName).Annotations["helm.sh/resource-policy"]; ok {
		t.Error("crds.keep=false did not reach the CRD")
	}
	// Without values, helm upgrade reuses the last release's (keep=false,
	// which the uninstall below would obey): back to the chart's defaults.
	mustRun("upgrade", release, deploy.ChartDir, "--reset-values")
	if getCRD(ctx, t, crdc, crdName).Annotations["helm.sh/resource-policy"] != "keep" {
		t.Error("crds.keep=true did not reach the CRD")
	}

	t.Log("helm uninstall: the release's objects go, the CRDs and the issuers stay")
	mustRun("uninstall", release)
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: "meshtrust-controller"}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment"}}); !apierrors.IsNotFound(err) {
		t.Errorf("the Deployment after uninstall: %v, want NotFound", err)
	}
	waitServed(t, crdc, crdName, true)
	assertIssuers(ctx, t, c, "kept", "new-field")

	t.Log("helm install again: the kept CRDs are adopted by the new release")
	mustRun("install", release, deploy.ChartDir)
	if getCRD(ctx, t, crdc, crdName).Annotations["meta.helm.sh/release-name"] != release {
		t.Error("the reinstalled release does not own the CRD")
	}
	assertIssuers(ctx, t, c, "kept", "new-field")

	t.Log("without crds.keep, helm uninstall deletes the CRDs, and with them every issuer")
	mustRun("upgrade", release, deploy.ChartDir, "--set", "crds.keep=false")
	mustRun("uninstall", release)
	lab.Eventually(t, time.Minute, "CRD "+crdName+" deleted", func(ctx context.Context) error {
		if err := crdc.Get(ctx, client.ObjectKey{Name: crdName}, &apiextensionsv1.CustomResourceDefinition{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}

// waitServed waits until the CRD name is established, not being deleted,
// and its served schema has (or lacks) spec.caBundleSecretRef, and returns
// it.
func waitServed(t *testing.T, c client.Client, name string, withField bool) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	var crd *apiextensionsv1.CustomResourceDefinition
	lab.Eventually(t, time.Minute, fmt.Sprintf("CRD %s served, caBundleSecretRef %v", name, withField), func(ctx context.Context) error {
		if err := crdEstablished(ctx, c, name); err != nil {
			return err
		}
		got := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			return err
		}
		if got.DeletionTimestamp != nil {
			return fmt.Errorf("being deleted")
		}
		i := slices.IndexFunc(got.Spec.Versions, func(v apiextensionsv1.CustomResourceDefinitionVersion) bool { return v.Storage })
		if i < 0 || got.Spec.Versions[i].Schema == nil {
			return fmt.Errorf("no storage version with a schema")
		}
		_, has := got.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"].Properties["caBundleSecretRef"]
		if has != withField {
			return fmt.Errorf("spec.caBundleSecretRef in schema: %v", has)
		}
		crd = got
		return nil
	})
	return crd
}

func getCRD(ctx context.Context, t *testing.T, c client.Client, name string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
		t.Fatal(err)
	}
	return crd
}

// createIssuer creates a VaultClusterIssuer with strict field validation,
// as `kubectl create` does, so an unknown field is an error rather than
// silently pruned. With caBundleFromSecret it sets spec.caBundleSecretRef.
func createIssuer(ctx context.Context, c *lab.Cluster, name string, caBundleFromSecret bool) error {
	spec := map[string]any{
		"server": "https://vault.example.com:8200",
		"auth":   map[string]any{"tokenSecretRef": map[string]any{"name": "vault-token", "key": "token"}},
	}
	if caBundleFromSecret {
		spec["caBundleSecretRef"] = map[string]any{"name": "vault-ca", "key": "ca.crt"}
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "meshtrust.io/v1alpha1", "kind": "VaultClusterIssuer",
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	// The client's REST mapper may not know the kind right after the CRD
	// appears: retry that, and only that.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Client.Create(ctx, u.DeepCopy(), client.FieldValidation("Strict"))
		if !meta.IsNoMatchError(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// assertIssuers fails t unless every named VaultClusterIssuer exists.
func assertIssuers(ctx context.Context, t *testing.T, c *lab.Cluster, names ...string) {
	t.Helper()
	for _, name := range names {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("meshtrust.io/v1alpha1")
		u.SetKind("VaultClusterIssuer")
		if err := c.Client.Get(ctx, client.ObjectKey{Name: name}, u); err != nil {
			t.Errorf("VaultClusterIssuer %s: %v", name, err)
		}
	}
}
