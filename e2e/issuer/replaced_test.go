package issuer_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/internal/statusguard"
)

// TestStatusWriteNeverLandsOnAReplacement replays, on the real API server,
// the race issuer-lib's status apply loses to cert-manager: a request is
// read and signed, cert-manager replaces it under the same name, and the
// signature is applied by name. Without the guard it lands on the
// replacement (the control); with it the API server refuses it, and a fresh
// read writes to the new request.
func TestStatusWriteNeverLandsOnAReplacement(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "replaced"
	if err := e.cluster.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// An issuer nobody runs, so that only this test writes the status.
	ref := cmmeta.IssuerReference{Group: "example.com", Kind: "Nobody", Name: "nobody"}
	csr := pkitest.URICSR(t, pkitest.ECKey(t), "replaced", "spiffe://east.mesh/ns/replaced/sa/x")
	// replace (re)creates the request and waits for cert-manager's approver,
	// which approves every request, so that its status write does not race
	// the applies below.
	replace := func(name string) {
		t.Helper()
		old := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := e.client.Delete(ctx, old); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		cr := newCR(ns, name, ref, csr, false, time.Hour)
		createOrFail(t, e.client, cr)
		eventually(t, 30*time.Second, "request "+name+" approved", func() (bool, string) {
			if err := e.client.Get(ctx, client.ObjectKeyFromObject(cr), cr); err != nil {
				return false, err.Error()
			}
			for _, c := range cr.Status.Conditions {
				if c.Type == cmapi.CertificateRequestConditionApproved && c.Status == cmmeta.ConditionTrue {
					return true, ""
				}
			}
			return false, "not approved"
		})
	}
	signed := func(name string) string {
		t.Helper()
		var cr cmapi.CertificateRequest
		if err := e.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cr); err != nil {
			t.Fatal(err)
		}
		return string(cr.Status.Certificate)
	}
	apply := func(c client.Client, name string) error {
		body, err := json.Marshal(map[string]any{"apiVersion": cmapi.SchemeGroupVersion.String(), "kind": cmapi.CertificateRequestKind,
			"metadata": map[string]any{"name": name, "namespace": ns},
			"status":   map[string]any{"certificate": []byte("signed for the old CSR")}})
		if err != nil {
			return err
		}
		obj := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		return c.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body),
			&client.SubResourcePatchOptions{PatchOptions: client.PatchOptions{FieldManager: "e2e-statusguard", Force: ptr.To(true)}})
	}
	readThenReplace := func(c client.Client, name string) {
		t.Helper()
		replace(name)
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cmapi.CertificateRequest{}); err != nil {
			t.Fatal(err)
		}
		replace(name)
	}

	// The control: a plain apply by name lands on the replacement.
	readThenReplace(e.client, "control")
	if err := apply(e.client, "control"); err != nil {
		t.Fatal(err)
	}
	if signed("control") == "" {
		t.Fatal("control: the plain apply did not land on the replacement, so this test proves nothing")
	}

	g := statusguard.New(e.client)
	readThenReplace(g, "guarded")
	if err := apply(g, "guarded"); err == nil {
		t.Fatal("the guarded apply to a replaced request succeeded")
	} else {
		t.Logf("API server refused the guarded apply: %v", err)
	}
	if got := signed("guarded"); got != "" {
		t.Fatalf("the replacement got the old request's certificate: %q", got)
	}
	// The next reconcile reads the new request and writes to it.
	if err := g.Get(ctx, client.ObjectKey{Namespace: ns, Name: "guarded"}, &cmapi.CertificateRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := apply(g, "guarded"); err != nil {
		t.Fatalf("guarded apply after a fresh read: %v", err)
	}
	if signed("guarded") == "" {
		t.Fatal("guarded apply after a fresh read did not land")
	}
}
