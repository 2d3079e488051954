package syncer_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// caIssuer makes, in ns, what an operator would reach for instead of Vault:
// a SelfSigned Issuer, a root CA Certificate from it, and a CA Issuer named
// name that signs with that root. It waits for the CA Issuer to be Ready.
func caIssuer(ctx context.Context, t *testing.T, c *lab.Cluster, ns, name string) {
	t.Helper()
	must(t, c.EnsureNamespace(ctx, ns))
	must(t, c.Client.Create(ctx, &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "selfsigned"},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}}}))
	must(t, c.Client.Create(ctx, &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-root"},
		Spec: cmapi.CertificateSpec{IsCA: true, CommonName: name + " root", SecretName: name + "-root",
			IssuerRef: cmmeta.IssuerReference{Kind: "Issuer", Name: "selfsigned"}}}))
	must(t, c.Client.Create(ctx, &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: name + "-root"}}}}))
	lab.Eventually(t, 90*time.Second, "CA Issuer "+ns+"/"+name+" Ready", func(ctx context.Context) error {
		var iss cmapi.Issuer
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &iss); err != nil {
			return err
		}
		for _, cond := range iss.Status.Conditions {
			if cond.Type == cmapi.IssuerConditionReady && cond.Status == cmmeta.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready: %+v", iss.Status.Conditions)
	})
}

// waitSource waits until ns/istio-ca's Secret holds an intermediate for
// which want returns nil, i.e. cert-manager re-issued it as the test
// changed it; on timeout it shows the Certificate and its events.
func waitSource(t *testing.T, c *lab.Cluster, ns, what string, want func(*x509.Certificate) error) {
	t.Helper()
	err := lab.WaitFor(context.Background(), 90*time.Second, func(ctx context.Context) error {
		src, err := getSecret(ctx, c, ns, "istio-ca-tls")
		if err != nil {
			return err
		}
		chain, err := pki.DecodeCertificates(src.Data["tls.crt"], pki.MaxChainPEMSize)
		if err != nil {
			return err
		}
		return want(chain[0])
	})
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t.Fatalf("waiting for %s/istio-ca-tls %s: %v\n%s", ns, what, err, c.DescribeCertificate(ctx, ns, "istio-ca"))
	}
}

// signedBy wants an intermediate whose issuer's CN is cn.
func signedBy(cn string) func(*x509.Certificate) error {
	return func(c *x509.Certificate) error {
		if got := c.Issuer.CommonName; got != cn {
			return fmt.Errorf("signed by %q", got)
		}
		return nil
	}
}

// nameConstrained wants an intermediate with a URI name constraint.
func nameConstrained(c *x509.Certificate) error {
	if len(c.PermittedURIDomains) == 0 {
		return fmt.Errorf("not yet re-issued with a name constraint")
	}
	return nil
}

// failures is how many refusals with check the manager counted.
func failures(t *testing.T, reg prometheus.Gatherer, check string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshtrust_cacerts_validation_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "check" && l.GetValue() == check {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// testForeignIssuer is the review's case: a working cacerts from Vault, then
// its Certificate moved to a CA issuer, as anyone with edit rights on it could
// do. cert-manager re-issues from the CA issuer, and the syncer refuses the
// new bundle with an event and a condition, leaving cacerts byte for byte.
func testForeignIssuer(ctx context.Context, t *testing.T, c *lab.Cluster, spec cmapi.CertificateSpec, run *running) {
	const ns = "rogue"
	intermediate(ctx, t, c, spec, ns, nil)
	waitReady(t, c, ns, 1)
	before, _ := waitCACertsFromSource(t, c, ns, 60*time.Second)
	caIssuer(ctx, t, c, ns, "rogue-ca")
	lab.Eventually(t, 30*time.Second, "istio-ca moved to the CA issuer", func(ctx context.Context) error {
		crt, err := fetchCert(ctx, c, ns)
		if err != nil {
			return err
		}
		crt.Spec.IssuerRef = cmmeta.IssuerReference{Kind: "Issuer", Name: "rogue-ca"}
		return c.Client.Update(ctx, crt)
	})
	waitSource(t, c, ns, "signed by the CA issuer", signedBy("rogue-ca root"))
	// The syncer has seen the issuerRef; one more reconcile, after the
	// re-issued Secret landed, shows that it refuses that bundle too.
	n := failures(t, run.reg, decision.ReasonIssuerNotAllowed)
	poke(ctx, t, c, ns)
	lab.Eventually(t, 30*time.Second, "another IssuerNotAllowed refusal", func(ctx context.Context) error {
		if got := failures(t, run.reg, decision.ReasonIssuerNotAllowed); got <= n {
			return fmt.Errorf("%v refusals, had %v", got, n)
		}
		return nil
	})
	lab.Eventually(t, 30*time.Second, "Warning event IssuerNotAllowed", func(ctx context.Context) error {
		return hasEvent(ctx, c, ns, "istio-ca", decision.ReasonIssuerNotAllowed, "Issuer.cert-manager.io/rogue-ca")
	})
	crt := getCert(ctx, t, c, ns)
	if cond := decision.Condition(crt, syncer.ConditionCACertsSynced); cond == nil || cond.Status != cmmeta.ConditionFalse || cond.Reason != decision.ReasonIssuerNotAllowed {
		t.Errorf("CACertsSynced = %+v, want False IssuerNotAllowed", cond)
	}
	after, err := getSecret(ctx, c, ns, "cacerts")
	must(t, err)
	if !maps.EqualFunc(before.Data, after.Data, bytes.Equal) || after.Annotations[syncer.AnnotationSerial] != before.Annotations[syncer.AnnotationSerial] {
		t.Error("cacerts changed: the CA issuer's bundle replaced Vault's")
	}
}

// testAllowedCAIssuer runs a syncer that allows one CA issuer by name
// (--syncer-allowed-issuers): its Certificate is still refused while its
// intermediate carries no URI name constraint, and installed once it does.
func testAllowedCAIssuer(ctx context.Context, t *testing.T, c *lab.Cluster) {
	const ns = "allowed-ca"
	caIssuer(ctx, t, c, ns, "mesh-ca")
	opts := syncer.DefaultOptions()
	opts.AllowedIssuers = []string{"Issuer.cert-manager.io/mesh-ca"}
	startSyncerWith(t, c, opts, []string{ns}, nil)
	must(t, c.Client.Create(ctx, &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istio-ca", Annotations: map[string]string{syncer.AnnotationOptIn: "true"}},
		Spec: cmapi.CertificateSpec{IsCA: true, CommonName: "allowed intermediate", SecretName: "istio-ca-tls",
			Duration: &metav1.Duration{Duration: 720 * time.Hour}, IssuerRef: cmmeta.IssuerReference{Kind: "Issuer", Name: "mesh-ca"}},
	}))
	lab.Eventually(t, 90*time.Second, "Warning event "+decision.ReasonUnconstrained, func(ctx context.Context) error {
		return hasEvent(ctx, c, ns, "istio-ca", decision.ReasonUnconstrained, "no URI name constraint")
	})
	if _, err := getSecret(ctx, c, ns, "cacerts"); err == nil {
		t.Fatal("an intermediate without a URI name constraint was installed")
	}
	lab.Eventually(t, 30*time.Second, "istio-ca name-constrained", func(ctx context.Context) error {
		crt, err := fetchCert(ctx, c, ns)
		if err != nil {
			return err
		}
		crt.Spec.NameConstraints = &cmapi.NameConstraints{Critical: true, Permitted: &cmapi.NameConstraintItem{URIDomains: []string{"allowed.mesh"}}}
		return c.Client.Update(ctx, crt)
	})
	// cert-manager does not re-issue for a changed nameConstraints alone.
	renew(ctx, t, c, ns)
	waitSource(t, c, ns, "name-constrained", nameConstrained)
	cacerts, _ := waitCACertsFromSource(t, c, ns, 60*time.Second)
	if b := assertWhole(t, cacerts, time.Now()); len(b.Cert.PermittedURIDomains) != 1 || b.Cert.PermittedURIDomains[0] != "allowed.mesh" {
		t.Errorf("installed intermediate permits %v, want allowed.mesh", b.Cert.PermittedURIDomains)
	}
}

// testMeshTrustDomainWarning writes Istio's mesh ConfigMap next to the
// layout namespace's cacerts with a trustDomain other than the
// intermediate's: the syncer says so in a Warning event on the Certificate,
// naming both, and keeps cacerts synced; with the right one it says
// nothing more.
func testMeshTrustDomainWarning(ctx context.Context, t *testing.T, c *lab.Cluster) {
	const ns = "layout"
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istio"}, Data: map[string]string{"mesh": "trustDomain: cluster.local\n"}}
	must(t, c.Client.Create(ctx, cm))
	t.Cleanup(func() { _ = c.Client.Delete(context.Background(), cm) })
	poke(ctx, t, c, ns)
	lab.Eventually(t, 30*time.Second, "Warning event "+decision.ReasonMeshTrustDomain, func(ctx context.Context) error {
		return hasEvent(ctx, c, ns, "istio-ca", decision.ReasonMeshTrustDomain,
			fmt.Sprintf(`Istio's meshConfig.trustDomain is "cluster.local" (ConfigMap %s/istio), but the intermediate in cacerts is constrained to %q`, ns, c.Name))
	})
	if cond := decision.Condition(getCert(ctx, t, c, ns), syncer.ConditionCACertsSynced); cond == nil || cond.Status != cmmeta.ConditionTrue {
		t.Errorf("CACertsSynced = %+v, want True: the warning is about Istio, not cacerts", cond)
	}
}
