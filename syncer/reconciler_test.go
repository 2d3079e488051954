package syncer

import (
	"bytes"
	"context"
	"crypto/x509"
	"maps"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

func TestSyncWritesIstioLayout(t *testing.T) {
	e := newEnv(t, Options{})
	e.certificate(nil)
	inter := e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()

	s := e.secret("ns", "cacerts")
	if s == nil {
		t.Fatal("cacerts not created")
	}
	if got := strings.Join(sortedKeys(s.Data), ","); got != "ca-cert.pem,ca-key.pem,cert-chain.pem,root-cert.pem" {
		t.Fatalf("keys = %s", got)
	}
	if !bytes.Equal(s.Data[pki.CACertKey], inter.PEM()) {
		t.Error("ca-cert.pem is not the intermediate")
	}
	if want := append(inter.PEM(), e.root.PEM()...); !bytes.Equal(s.Data[pki.CertChainKey], want) {
		t.Error("cert-chain.pem is not intermediate then root")
	}
	if !bytes.Equal(s.Data[pki.RootCertKey], e.root.PEM()) {
		t.Error("root-cert.pem is not the root")
	}
	if s.Labels[decision.ManagedByLabel] != decision.ManagedByValue {
		t.Errorf("labels = %v", s.Labels)
	}
	a := s.Annotations
	if a[AnnotationSource] != "ns/ca" || a[AnnotationSourceRevision] != "1" || a[AnnotationSerial] != inter.Cert.SerialNumber.Text(16) ||
		a[AnnotationRootFPs] != pki.Fingerprint(e.root.Cert) || a[AnnotationNotAfter] != inter.Cert.NotAfter.UTC().Format(time.RFC3339) ||
		a[AnnotationSyncedAt] != e.now().Format(time.RFC3339) {
		t.Errorf("annotations = %v", a)
	}
	b, err := pki.ParseIstio(s.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.Verify(b, e.now(), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if !hasEvent(e.rec.take(), "Normal Synced", "cacerts", inter.Cert.SerialNumber.Text(16)) {
		t.Error("no Synced event")
	}
	if c := decision.Condition(e.getCert(), ConditionCACertsSynced); c == nil || c.Status != cmmeta.ConditionTrue || !strings.Contains(c.Message, inter.Cert.SerialNumber.Text(16)) {
		t.Errorf("CACertsSynced condition = %+v", c)
	}

	// A second pass with nothing new writes nothing.
	rv := s.ResourceVersion
	e.clock.Step(time.Minute)
	e.mustReconcile()
	if e.secret("ns", "cacerts").ResourceVersion != rv {
		t.Error("unchanged bundle was rewritten")
	}
}

// Istio's mesh ConfigMap in the target's namespace is read live: a
// trustDomain other than the intermediate's constraint is a Warning event,
// and cacerts is still written (it is right; Istio's setting is not).
func TestMeshTrustDomainMismatchWarns(t *testing.T) {
	for _, tc := range []struct {
		name, mesh string
		warn       bool
	}{
		{"wrong trust domain", "trustDomain: wrong.mesh\n", true},
		{"istiod's default", "accessLogFile: /dev/stdout\n", true},
		{"the intermediate's trust domain", "trustDomain: " + testTrustDomain + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "istio"}, Data: map[string]string{"mesh": tc.mesh}}
			e := newEnv(t, Options{MeshConfigMap: "istio"}, cm)
			e.certificate(nil)
			e.issue(pkitest.Spec{}, e.root)
			e.mustReconcile()
			if e.secret("ns", "cacerts") == nil {
				t.Fatal("cacerts not written")
			}
			if got := hasEvent(e.rec.take(), "Warning "+decision.ReasonMeshTrustDomain, "ConfigMap ns/istio", `constrained to "east.mesh"`); got != tc.warn {
				t.Errorf("Warning event %s: %v, want %v", decision.ReasonMeshTrustDomain, got, tc.warn)
			}
		})
	}
}

func TestSyncTLSLayoutAndTarget(t *testing.T) {
	e := newEnv(t, Options{TargetNamespaces: []string{"istio-system"}})
	e.certificate(map[string]string{AnnotationLayout: "tls", AnnotationTarget: "istio-system/cacerts"})
	e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	s := e.secret("istio-system", "cacerts")
	if s == nil {
		t.Fatal("cacerts not created in the target namespace")
	}
	if got := strings.Join(sortedKeys(s.Data), ","); got != "ca.crt,tls.crt,tls.key" {
		t.Fatalf("keys = %s", got)
	}
	if _, err := pki.ParseTLS(s.Data); err != nil {
		t.Fatal(err)
	}
}

// TestBadInputLeavesCACertsUntouched is the issue's bad-input list: every case
// starts from a good, synced cacerts and must end with it byte-for-byte
// unchanged and a Warning event naming what is wrong.
func TestBadInputLeavesCACertsUntouched(t *testing.T) {
	type tc struct {
		name  string
		opts  Options
		ann   map[string]string
		setup func(e *env) // runs after the good sync
		// target is where to look for the untouched Secret.
		targetNS string
		want     []string // event substrings
	}
	bad := func(f func(e *env, d map[string][]byte)) func(e *env) {
		return func(e *env) {
			inter := newInter(e.t, e.now(), pkitest.Spec{CN: "next"}, e.root)
			d := pkitest.TLSData(e.t, inter, e.root)
			f(e, d)
			e.setSource(d)
		}
	}
	tests := []tc{
		{name: "missing tls.key", setup: bad(func(e *env, d map[string][]byte) { delete(d, "tls.key") }), want: []string{"InvalidBundle", "missing-key", "tls.key"}},
		{name: "garbage PEM", setup: bad(func(e *env, d map[string][]byte) { d["tls.crt"] = []byte("-----BEGIN CERTIFICATE-----\nnot base64\n") }), want: []string{"InvalidBundle", "tls.crt"}},
		{name: "key does not match", setup: bad(func(e *env, d map[string][]byte) {
			d["tls.key"] = pkitest.New(e.t, e.now(), pkitest.Spec{CN: "other"}, nil).KeyPEM(e.t)
		}), want: []string{"InvalidBundle", "key-match", "CN=next"}},
		{name: "not a CA", setup: bad(func(e *env, d map[string][]byte) {
			x := newInter(e.t, e.now(), pkitest.Spec{CN: "leafy", NotCA: true}, e.root)
			maps.Copy(d, pkitest.TLSData(e.t, x, e.root))
		}), want: []string{"InvalidBundle", "is-ca", "CN=leafy"}},
		{name: "expired", setup: bad(func(e *env, d map[string][]byte) {
			x := newInter(e.t, e.now(), pkitest.Spec{CN: "old", NotBefore: e.now().Add(-72 * time.Hour), NotAfter: e.now().Add(-time.Minute)}, e.root)
			maps.Copy(d, pkitest.TLSData(e.t, x, e.root))
		}), want: []string{"InvalidBundle", "expired", "notAfter="}},
		{name: "not yet valid", setup: bad(func(e *env, d map[string][]byte) {
			x := newInter(e.t, e.now(), pkitest.Spec{CN: "future", NotBefore: e.now().Add(time.Hour)}, e.root)
			maps.Copy(d, pkitest.TLSData(e.t, x, e.root))
		}), want: []string{"InvalidBundle", "not-yet-valid", "notBefore="}},
		{name: "ca.crt empty", setup: bad(func(e *env, d map[string][]byte) { d["ca.crt"] = nil }), want: []string{"InvalidBundle", "ca.crt"}},
		{name: "ca.crt names another root", setup: bad(func(e *env, d map[string][]byte) {
			d["ca.crt"] = pkitest.New(e.t, e.now(), pkitest.Spec{CN: "stranger"}, nil).PEM()
		}), want: []string{"InvalidBundle", "chain-verify", "does not chain"}},
		{name: "clientAuth-only intermediate", setup: bad(func(e *env, d map[string][]byte) {
			x := newInter(e.t, e.now(), pkitest.Spec{CN: "client-only", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, e.root)
			maps.Copy(d, pkitest.TLSData(e.t, x, e.root))
		}), want: []string{"InvalidBundle", "key-usage", "serverAuth"}},
		{name: "expires within one workload lifetime", setup: bad(func(e *env, d map[string][]byte) {
			x := newInter(e.t, e.now(), pkitest.Spec{CN: "short", NotAfter: e.now().Add(23 * time.Hour)}, e.root)
			maps.Copy(d, pkitest.TLSData(e.t, x, e.root))
		}), want: []string{"InvalidBundle", "remaining-lifetime", "24h0m0s"}},
		{name: "source over 1 MiB", setup: bad(func(e *env, d map[string][]byte) { d["padding"] = make([]byte, pki.MaxSecretSize) }), want: []string{"SourceTooLarge", "over the 1048576 byte limit"}},
		{name: "cacerts owned by another Certificate", setup: func(e *env) {
			s := e.secret("ns", "cacerts")
			s.Annotations[AnnotationSource] = "ns/someone-else"
			if err := e.client.Update(context.Background(), s); err != nil {
				e.t.Fatal(err)
			}
			bad(func(*env, map[string][]byte) {})(e)
		}, want: []string{"CACertsOwnedByOther", "ns/someone-else", "meshtrust.io/adopt"}},
		{name: "issued by a SelfSigned issuer", setup: func(e *env) {
			// What a CA issuer's or SelfSigned issuer's Certificate with the
			// annotation looks like: it must never replace istiod's CA.
			crt := e.getCert()
			crt.Spec.IssuerRef = cmmeta.IssuerReference{Name: "selfsigned", Kind: "Issuer"}
			if err := e.client.Update(context.Background(), crt); err != nil {
				e.t.Fatal(err)
			}
			bad(func(*env, map[string][]byte) {})(e)
		}, want: []string{decision.ReasonIssuerNotAllowed, "Issuer.cert-manager.io/selfsigned", "VaultClusterIssuer.meshtrust.io, VaultIssuer.meshtrust.io"}},
		{name: "issued by a VaultClusterIssuer not on the allowed list", setup: func(e *env) {
			o := e.r.Options
			o.AllowedIssuers = []string{"VaultClusterIssuer.meshtrust.io/other"}
			var err error
			if e.r.Options, err = o.complete(); err != nil {
				e.t.Fatal(err)
			}
			bad(func(*env, map[string][]byte) {})(e)
		}, want: []string{decision.ReasonIssuerNotAllowed, "VaultClusterIssuer.meshtrust.io/meshtrust-vault", "VaultClusterIssuer.meshtrust.io/other"}},
		{name: "intermediate without a URI name constraint", setup: bad(func(e *env, d map[string][]byte) {
			x := newInter(e.t, e.now(), pkitest.Spec{CN: "unconstrained", PermittedURIDomains: []string{}}, e.root)
			maps.Copy(d, pkitest.TLSData(e.t, x, e.root))
		}), want: []string{decision.ReasonUnconstrained, "CN=unconstrained", "no URI name constraint"}},
		{name: "intermediate constrained to two trust domains", setup: bad(func(e *env, d map[string][]byte) {
			x := newInter(e.t, e.now(), pkitest.Spec{CN: "wide", PermittedURIDomains: []string{"east.mesh", "west.mesh"}}, e.root)
			maps.Copy(d, pkitest.TLSData(e.t, x, e.root))
		}), want: []string{decision.ReasonUnconstrained, "CN=wide", "permits 2 URI domains"}},
		{name: "bad layout annotation", setup: func(e *env) {
			crt := e.getCert()
			crt.Annotations[AnnotationLayout] = "pkcs12"
			if err := e.client.Update(context.Background(), crt); err != nil {
				e.t.Fatal(err)
			}
			bad(func(*env, map[string][]byte) {})(e)
		}, want: []string{"InvalidAnnotation", AnnotationLayout, "pkcs12"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			e.certificate(tt.ann)
			e.issue(pkitest.Spec{}, e.root)
			e.mustReconcile()
			before := e.secret("ns", "cacerts").DeepCopy()
			e.rec.take()

			tt.setup(e)
			e.clock.Step(time.Minute)
			_, _ = e.reconcile()

			after := e.secret("ns", "cacerts")
			if !maps.EqualFunc(before.Data, after.Data, bytes.Equal) {
				t.Error("cacerts data changed")
			}
			if after.Annotations[AnnotationSyncedAt] != before.Annotations[AnnotationSyncedAt] {
				t.Error("cacerts was rewritten")
			}
			evs := e.rec.take()
			if !hasEvent(evs, "Warning ", tt.want...) {
				t.Errorf("no Warning event with %q in %q", tt.want, evs)
			}
			if c := decision.Condition(e.getCert(), ConditionCACertsSynced); c == nil || c.Status != cmmeta.ConditionFalse || !strings.Contains(c.Message+c.Reason, tt.want[0]) {
				t.Errorf("CACertsSynced condition = %+v", c)
			}
			for _, ev := range evs {
				if strings.Contains(ev, "PRIVATE KEY") {
					t.Errorf("event leaks key material: %s", ev)
				}
			}
		})
	}
}

func TestNeverClobbersUnmanaged(t *testing.T) {
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cacerts"}, Data: map[string][]byte{"ca-cert.pem": []byte("theirs")}}
	e := newEnv(t, Options{}, foreign)
	e.certificate(nil)
	e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	if got := e.secret("ns", "cacerts"); string(got.Data["ca-cert.pem"]) != "theirs" || len(got.Data) != 1 {
		t.Errorf("unmanaged cacerts was changed: %v", sortedKeys(got.Data))
	}
	if evs := e.rec.take(); !hasEvent(evs, "Warning UnmanagedCACerts", "meshtrust.io/adopt: \"true\"") {
		t.Errorf("events = %q", evs)
	}
}

func TestTargetNamespaceNotAllowed(t *testing.T) {
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "cacerts", Labels: map[string]string{decision.ManagedByLabel: decision.ManagedByValue}}, Data: map[string][]byte{"x": []byte("y")}}
	e := newEnv(t, Options{TargetNamespaces: []string{"mesh"}}, theirs)
	e.certificate(map[string]string{AnnotationTarget: "istio-system/cacerts"})
	e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	if got := e.secret("istio-system", "cacerts"); len(got.Data) != 1 {
		t.Error("cacerts in a disallowed namespace was written")
	}
	if evs := e.rec.take(); !hasEvent(evs, "Warning TargetNotAllowed", "istio-system", "--syncer-target-namespaces") {
		t.Errorf("events = %q", evs)
	}
}

// staleReader hides the target Secret, as a cache that has not caught up.
type staleReader struct{ client.Reader }

func (s staleReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return s.Reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: "does-not-exist"}, obj, opts...)
}

func TestStaleCacheNeverClobbers(t *testing.T) {
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cacerts"}, Data: map[string][]byte{"ca-cert.pem": []byte("theirs")}}
	e := newEnv(t, Options{}, foreign)
	e.r.Targets = staleReader{e.client}
	e.certificate(nil)
	e.issue(pkitest.Spec{}, e.root)
	if _, err := e.reconcile(); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("reconcile err = %v, want AlreadyExists", err)
	}
	if got := e.secret("ns", "cacerts"); string(got.Data["ca-cert.pem"]) != "theirs" {
		t.Error("unmanaged cacerts was overwritten through a stale read")
	}
}

func TestAdoptKeepsOldRootVerbatim(t *testing.T) {
	now := pkitest.RandomNow(t)
	oldRoot := pkitest.New(t, now, pkitest.Spec{CN: "old-root"}, nil)
	// Vault-style: no trailing newline.
	oldBytes := bytes.TrimRight(oldRoot.PEM(), "\n")
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cacerts"}, Data: map[string][]byte{"root-cert.pem": oldBytes}}
	e := newEnv(t, Options{}, foreign)
	e.certificate(map[string]string{AnnotationAdopt: "true", AnnotationRootGrace: "48h"})
	e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	s := e.secret("ns", "cacerts")
	if s.Labels[decision.ManagedByLabel] != decision.ManagedByValue {
		t.Fatal("not adopted")
	}
	if !bytes.HasPrefix(s.Data[pki.RootCertKey], oldBytes) {
		t.Error("old root bytes not kept verbatim at the start")
	}
	roots, err := pki.DecodeCertificates(s.Data[pki.RootCertKey], pki.MaxRootBundlePEMSize)
	if err != nil || len(roots) != 2 {
		t.Fatalf("root-cert.pem holds %d roots: %v", len(roots), err)
	}
	if s.Annotations[AnnotationRootsChangedAt] != e.now().Format(time.RFC3339) {
		t.Errorf("roots-changed-at = %q", s.Annotations[AnnotationRootsChangedAt])
	}

	// Within the grace period nothing changes, even across a renewal.
	e.clock.Step(24 * time.Hour)
	e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	if s := e.secret("ns", "cacerts"); !bytes.HasPrefix(s.Data[pki.RootCertKey], oldBytes) {
		t.Error("old root dropped inside the grace period")
	}
	// After it, the old root goes.
	e.clock.Step(25 * time.Hour)
	res := e.mustReconcile()
	s = e.secret("ns", "cacerts")
	if !bytes.Equal(s.Data[pki.RootCertKey], e.root.PEM()) {
		t.Error("old root kept after the grace period")
	}
	if _, ok := s.Annotations[AnnotationRootsChangedAt]; ok {
		t.Error("roots-changed-at kept after the grace period")
	}
	if res.RequeueAfter <= 0 {
		t.Error("no requeue for the lifetime guard")
	}
}

func TestRootChangeWithinGrace(t *testing.T) {
	e := newEnv(t, Options{})
	e.certificate(nil)
	e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	oldFile := e.secret("ns", "cacerts").Data[pki.RootCertKey]

	newRoot := pkitest.New(t, e.now(), pkitest.Spec{CN: "new-root", NotAfter: e.now().Add(5 * 365 * 24 * time.Hour)}, nil)
	e.clock.Step(time.Hour)
	inter := e.issue(pkitest.Spec{CN: "under-new-root"}, newRoot)
	res := e.mustReconcile()
	s := e.secret("ns", "cacerts")
	if !bytes.HasPrefix(s.Data[pki.RootCertKey], oldFile) {
		t.Error("old root file not at the start of the new one")
	}
	if !bytes.Equal(s.Data[pki.CACertKey], inter.PEM()) {
		t.Error("new intermediate not written")
	}
	if want := append(inter.PEM(), newRoot.PEM()...); !bytes.Equal(s.Data[pki.CertChainKey], want) {
		t.Error("cert-chain.pem does not end in the new root")
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > 720*time.Hour {
		t.Errorf("requeue after %s, want by the end of the 720h grace", res.RequeueAfter)
	}
}

// TestRootsAddedOrReorderedKeepOldFileFirst follows one cluster through a
// root rotation: ca.crt gains the new root, then lists it first once the
// cluster signs under it. istiod accepts a new root-cert.pem only if it
// contains the old file byte for byte, so every step must keep it.
func TestRootsAddedOrReorderedKeepOldFileFirst(t *testing.T) {
	e := newEnv(t, Options{})
	e.certificate(nil)
	e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	oneRoot := e.secret("ns", "cacerts").Data[pki.RootCertKey]

	newRoot := pkitest.New(t, e.now(), pkitest.Spec{CN: "new-root", NotAfter: e.now().Add(5 * 365 * 24 * time.Hour)}, nil)
	withRoots := func(inter *pkitest.Cert, roots ...*pkitest.Cert) {
		data := pkitest.TLSData(t, inter, roots[0])
		var bundle []byte
		for _, r := range roots {
			bundle = append(bundle, r.PEM()...)
		}
		data["ca.crt"] = bundle
		e.setSource(data)
		e.mustReconcile()
	}

	e.clock.Step(time.Hour)
	withRoots(e.issue(pkitest.Spec{CN: "old-root-era"}, e.root), e.root, newRoot)
	twoRoots := e.secret("ns", "cacerts").Data[pki.RootCertKey]
	if !bytes.HasPrefix(twoRoots, oneRoot) || !bytes.Contains(twoRoots, newRoot.PEM()) {
		t.Fatalf("adding a root: root-cert.pem does not keep the old file first and add the new root")
	}

	e.clock.Step(time.Hour)
	inter := e.issue(pkitest.Spec{CN: "new-root-era"}, newRoot)
	withRoots(inter, newRoot, e.root)
	s := e.secret("ns", "cacerts")
	if got := s.Data[pki.RootCertKey]; !bytes.Equal(got, twoRoots) {
		t.Errorf("reordered roots rewrote root-cert.pem; istiod would ignore the update:\n%s", got)
	}
	if !bytes.Equal(s.Data[pki.CACertKey], inter.PEM()) {
		t.Error("the intermediate under the new root was not written")
	}
}

func TestLifetimeGuardTriggersRenewal(t *testing.T) {
	e := newEnv(t, Options{})
	e.certificate(nil)
	// 30 days of life, renewal at 2/3 → 10 days left: fine.
	e.issue(pkitest.Spec{}, e.root)
	crt := e.getCert()
	crt.Status.RenewalTime = &metav1.Time{Time: crt.Status.NotAfter.Add(-24 * time.Hour)}
	if err := e.client.Status().Update(context.Background(), crt); err != nil {
		t.Fatal(err)
	}
	res := e.mustReconcile()
	if decision.Issuing(e.getCert()) {
		t.Fatal("renewal triggered too early")
	}
	if evs := e.rec.take(); !hasEvent(evs, "Warning RenewBeforeTooShort", "24h0m0s") {
		t.Errorf("no renew-before warning: %q", evs)
	}
	wantGuard := crt.Status.NotAfter.Add(-25 * time.Hour).Sub(e.now())
	if res.RequeueAfter != wantGuard {
		t.Errorf("requeue after %s, want %s (the guard)", res.RequeueAfter, wantGuard)
	}
	e.clock.Step(res.RequeueAfter)
	e.mustReconcile()
	c := decision.Condition(e.getCert(), cmapi.CertificateConditionIssuing)
	if c == nil || c.Status != cmmeta.ConditionTrue || c.Reason != decision.ReasonLifetimeGuard {
		t.Fatalf("Issuing condition = %+v", c)
	}
	if evs := e.rec.take(); !hasEvent(evs, "Normal LifetimeGuard", "triggering renewal") {
		t.Errorf("events = %q", evs)
	}
}

func TestScheduledRotation(t *testing.T) {
	e := newEnv(t, Options{})
	e.certificate(map[string]string{AnnotationRotationSchedule: "0 3 * * *", AnnotationRotationJitter: "30m"})
	e.issue(pkitest.Spec{}, e.root)
	// Pretend the certificate was issued two days ago so slots are owed.
	crt := e.getCert()
	crt.Status.NotBefore = &metav1.Time{Time: e.now().Add(-49 * time.Hour)}
	if err := e.client.Status().Update(context.Background(), crt); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile()
	crt = e.getCert()
	rec := crt.Annotations[AnnotationLastRotation]
	slot, err := time.Parse(time.RFC3339, rec)
	if err != nil {
		t.Fatalf("no slot recorded: %v", err)
	}
	if slot.Hour() != 3 || slot.After(e.now()) || e.now().Sub(slot) > 25*time.Hour {
		t.Errorf("recorded slot %s is not the latest 03:00 before %s", slot, e.now())
	}
	if c := decision.Condition(crt, cmapi.CertificateConditionIssuing); c == nil || c.Reason != decision.ReasonScheduled {
		t.Fatalf("Issuing = %+v", c)
	}
	if evs := e.rec.take(); !hasEvent(evs, "Normal ScheduledRotation", rec) {
		t.Errorf("events = %q", evs)
	}

	// cert-manager re-issues; a restarted controller (fresh reconciler, same
	// state) must not fire the same slot again.
	e.issue(pkitest.Spec{}, e.root)
	m, _ := NewMetrics(nil)
	e.r = &Reconciler{Client: e.client, Targets: e.client, APIReader: e.client, Recorder: e.rec, Metrics: m, Options: e.r.Options}
	res := e.mustReconcile()
	if decision.Issuing(e.getCert()) {
		t.Fatal("slot fired twice")
	}
	next := slot.Add(24 * time.Hour)
	if at := e.now().Add(res.RequeueAfter); at.Before(next) || at.After(next.Add(30*time.Minute)) {
		t.Errorf("next wake-up %s not within the jittered next slot %s", at, next)
	}
	// The controller is down across three slots: one renewal at start-up.
	e.clock.SetTime(next.Add(2*24*time.Hour + time.Hour))
	e.mustReconcile()
	crt = e.getCert()
	if got := crt.Annotations[AnnotationLastRotation]; got != next.Add(48*time.Hour).Format(time.RFC3339) {
		t.Errorf("recorded %s, want the latest missed slot", got)
	}
	if !decision.Issuing(crt) {
		t.Error("missed slot did not fire at start-up")
	}
}

func TestScheduledTriggerLostIsResumed(t *testing.T) {
	e := newEnv(t, Options{})
	e.certificate(map[string]string{AnnotationRotationSchedule: "0 3 * * *"})
	e.issue(pkitest.Spec{}, e.root)
	// A slot was recorded at revision 1 but the controller died before
	// setting Issuing.
	crt := e.getCert()
	slot := time.Date(e.now().Year(), e.now().Month(), e.now().Day(), 3, 0, 0, 0, time.UTC)
	if slot.After(e.now()) {
		slot = slot.Add(-24 * time.Hour)
	}
	crt.Annotations[AnnotationLastRotation] = slot.Format(time.RFC3339)
	crt.Annotations[AnnotationLastRotationRevision] = "1"
	if err := e.client.Update(context.Background(), crt); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile()
	if c := decision.Condition(e.getCert(), cmapi.CertificateConditionIssuing); c == nil || c.Reason != decision.ReasonScheduledResumed {
		t.Fatalf("Issuing = %+v", c)
	}
}

func TestRestartAfterSync(t *testing.T) {
	e := newEnv(t, Options{}, deployment("ns", "istiod"))
	e.certificate(map[string]string{AnnotationRestartAfterSync: "deployment/istiod"})
	e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	d := deployment("ns", "istiod")
	if err := e.client.Get(context.Background(), client.ObjectKeyFromObject(d), d); err != nil {
		t.Fatal(err)
	}
	sum := e.secret("ns", "cacerts").Annotations[AnnotationContentChecksum]
	if d.Spec.Template.Annotations[ChecksumPodAnnotation] != sum || d.Spec.Template.Annotations[RestartedAtAnnotation] == "" {
		t.Fatalf("pod template annotations = %v", d.Spec.Template.Annotations)
	}
	if evs := e.rec.take(); !hasEvent(evs, "Normal Restarted", "ns/istiod") {
		t.Errorf("events = %q", evs)
	}
	e.mustReconcile()
	if evs := e.rec.take(); hasEvent(evs, "Normal Restarted") {
		t.Error("restarted again without a change")
	}
}

func TestMetricsAfterSync(t *testing.T) {
	e := newEnv(t, Options{})
	e.certificate(nil)
	inter := e.issue(pkitest.Spec{}, e.root)
	e.mustReconcile()
	if got := gaugeValue(t, e.r.Metrics.Expiry.WithLabelValues("ns", "cacerts")); got != float64(inter.Cert.NotAfter.Unix()) {
		t.Errorf("expiry = %v", got)
	}
	if got := gaugeValue(t, e.r.Metrics.Roots.WithLabelValues("ns", "cacerts")); got != 1 {
		t.Errorf("roots = %v", got)
	}
	if got := counterValue(t, e.r.Metrics.Syncs.WithLabelValues(ResultSynced)); got != 1 {
		t.Errorf("synced = %v", got)
	}
	if got := gaugeValue(t, e.r.Metrics.LastSync); got != float64(e.now().Unix()) {
		t.Errorf("last sync = %v", got)
	}
	e.setSource(map[string][]byte{"tls.crt": []byte("x")})
	_, _ = e.reconcile()
	if got := counterValue(t, e.r.Metrics.ValidationFailures.WithLabelValues(string(pki.CheckMissing))); got != 1 {
		t.Errorf("validation failures = %v", got)
	}
}
