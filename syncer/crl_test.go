package syncer

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

const crlIssuer = "vault"

// crlEnv is env with the Certificate signed by VaultClusterIssuer "vault",
// whose issuer hands it CRLs through the exchange ConfigMap.
type crlEnv struct {
	*env
	td string
}

func newCRLEnv(t *testing.T, opts Options, ann map[string]string) *crlEnv {
	t.Helper()
	e := &crlEnv{env: newEnv(t, opts), td: "kind2"}
	e.r.Exchanges = e.client
	crt := e.certificate(ann)
	crt.Spec.IssuerRef = cmmeta.IssuerReference{Group: crlexchange.Group, Kind: crlexchange.KindClusterIssuer, Name: crlIssuer}
	if err := e.client.Update(context.Background(), crt); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *crlEnv) exchangeKey() client.ObjectKey {
	return client.ObjectKey{Namespace: "meshtrust-system", Name: crlexchange.ConfigMapName(crlexchange.KindClusterIssuer, crlIssuer)}
}

// setExchange writes the issuer's keys of the exchange ConfigMap, keeping
// the syncer's.
func (e *crlEnv) setExchange(data map[string]string) {
	e.t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{}
	err := e.client.Get(ctx, e.exchangeKey(), cm)
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: e.exchangeKey().Namespace, Name: e.exchangeKey().Name,
			Labels: map[string]string{crlexchange.LabelKey: crlexchange.LabelValue}, Annotations: map[string]string{crlexchange.IssuerAnnotation: crlIssuer}}}
		cm.Data = data
		if err := e.client.Create(ctx, cm); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	for k, v := range data {
		cm.Data[k] = v
	}
	if err := e.client.Update(ctx, cm); err != nil {
		e.t.Fatal(err)
	}
}

func (e *crlEnv) exchange() *corev1.ConfigMap {
	e.t.Helper()
	cm := &corev1.ConfigMap{}
	if err := e.client.Get(context.Background(), e.exchangeKey(), cm); err != nil {
		e.t.Fatal(err)
	}
	return cm
}

// status is the issuer's status.json with peers and published
// intermediates.
func status(t *testing.T, td string, peers []crlexchange.Peer, published map[string]time.Time) string {
	t.Helper()
	s, err := crlexchange.Status{TrustDomain: td, Peers: peers, Published: published}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *crlEnv) issueInter() *pkitest.Cert {
	return e.issue(pkitest.Spec{MaxPathLenZero: true, PermittedURIDomains: []string{e.td}}, e.root)
}

func (e *crlEnv) crlsInCACerts() []*x509.RevocationList {
	e.t.Helper()
	s := e.secret("ns", "cacerts")
	if s == nil {
		e.t.Fatal("no cacerts")
	}
	crls, err := pki.DecodeCRLs(s.Data[pki.CRLKey], pki.MaxCRLBundlePEMSize)
	if err != nil {
		e.t.Fatal(err)
	}
	return crls
}

func issuedBy(crls []*x509.RevocationList, ca *x509.Certificate) bool {
	for _, c := range crls {
		if pki.CRLIssuedBy(c, ca) {
			return true
		}
	}
	return false
}

func crlCondition(e *env) *string {
	c := decision.Condition(e.getCert(), ConditionCRLSynced)
	if c == nil {
		return nil
	}
	s := string(c.Status) + " " + c.Reason + " " + c.Message
	return &s
}

func gauge(t *testing.T, g interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.GetGauge() != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

func TestCRLWrittenFromVaultAndOwn(t *testing.T) {
	e := newCRLEnv(t, Options{}, nil)
	inter := e.issueInter()
	revokedPeer := pkitest.New(t, e.now(), pkitest.Spec{CN: "kind3 istio intermediate CA", PermittedURIDomains: []string{"kind3"}}, e.root)
	rootCRL := e.root.CRL(t, e.now(), pkitest.CRLSpec{Number: 7, Revoked: []*x509.Certificate{revokedPeer.Cert}})
	e.setExchange(map[string]string{crlexchange.KeyVaultCRLs: string(pkitest.CRLPEM(rootCRL)), crlexchange.KeyStatus: status(t, e.td, nil, nil)})
	e.mustReconcile()

	crls := e.crlsInCACerts()
	if len(crls) != 2 || !issuedBy(crls, e.root.Cert) || !issuedBy(crls, inter.Cert) {
		t.Fatalf("ca-crl.pem holds %d CRLs; want the root's and the intermediate's", len(crls))
	}
	if missing := pki.MissingCRLs([]*x509.Certificate{inter.Cert, e.root.Cert}, crls); len(missing) != 0 {
		t.Fatalf("istiod would refuse it: no CRL of %v", missing)
	}
	own := e.exchange().Data[crlexchange.OwnKey("ns", "ca")]
	certs, ownCRLs, err := pki.DecodeCRLEntry([]byte(own), pki.MaxCRLPEMSize)
	if err != nil || len(certs) != 1 || !certs[0].Equal(inter.Cert) || len(ownCRLs) != 1 || !pki.CRLIssuedBy(ownCRLs[0], inter.Cert) {
		t.Fatalf("the syncer did not publish its intermediate with its CRL: %d certificates, %d CRLs, %v", len(certs), len(ownCRLs), err)
	}
	if c := crlCondition(e.env); c == nil || !strings.HasPrefix(*c, "True CRLSynced") || !strings.Contains(*c, "1 revoked serials") {
		t.Errorf("CRLSynced = %v", c)
	}
	if got := gauge(t, e.r.Metrics.CRLRevokedSerials.WithLabelValues("ns", "cacerts")); got != 1 {
		t.Errorf("meshtrust_crl_revoked_serials = %v, want 1", got)
	}
	if got := gauge(t, e.r.Metrics.CRLNextUpdate.WithLabelValues("ns", "cacerts")); got != float64(rootCRL.NextUpdate.Unix()) {
		t.Errorf("meshtrust_crl_next_update_timestamp_seconds = %v, want the root CRL's %v", got, rootCRL.NextUpdate.Unix())
	}

	// The same input again changes nothing: the own CRL is reused, not
	// signed anew.
	rv := e.secret("ns", "cacerts").ResourceVersion
	e.clock.Step(time.Minute)
	e.mustReconcile()
	if e.secret("ns", "cacerts").ResourceVersion != rv {
		t.Error("cacerts rewritten without a change")
	}

	// A refresh changes only ca-crl.pem.
	before := e.secret("ns", "cacerts").Data
	newer := e.root.CRL(t, e.now(), pkitest.CRLSpec{Number: 8})
	e.setExchange(map[string]string{crlexchange.KeyVaultCRLs: string(pkitest.CRLPEM(newer))})
	e.mustReconcile()
	after := e.secret("ns", "cacerts").Data
	for k, v := range before {
		if k != pki.CRLKey && !bytes.Equal(v, after[k]) {
			t.Errorf("a CRL refresh changed %s", k)
		}
	}
	if bytes.Equal(before[pki.CRLKey], after[pki.CRLKey]) || !strings.Contains(string(after[pki.CRLKey]), string(pkitest.CRLPEM(newer))) {
		t.Error("the newer root CRL is not in ca-crl.pem")
	}
}

// The issue's bad CRL inputs: each leaves ca-crl.pem byte for byte as it
// was, with a Warning event, CRLSynced=False and the check counted.
func TestBadCRLInputLeavesCACRLUntouched(t *testing.T) {
	tests := []struct {
		name  string
		input func(e *crlEnv) string
		check pki.Check
	}{
		{"expired", func(e *crlEnv) string {
			return string(pkitest.CRLPEM(e.root.CRL(t, e.now(), pkitest.CRLSpec{Number: 9, ThisUpdate: e.now().Add(-73 * time.Hour), NextUpdate: e.now().Add(-time.Hour)})))
		}, pki.CheckCRLExpired},
		{"signed by a foreign CA", func(e *crlEnv) string {
			foreign := pkitest.New(t, e.now(), pkitest.Spec{CN: "foreign"}, nil)
			return string(pkitest.CRLPEM(foreign.CRL(t, e.now(), pkitest.CRLSpec{})))
		}, pki.CheckCRLIssuer},
		{"garbage", func(*crlEnv) string { return "garbage" }, pki.CheckCRLPEM},
		{"oversized", func(*crlEnv) string { return strings.Repeat("A", pki.MaxCRLPEMSize+1) }, pki.CheckCRLSize},
		{"an older CRL number (a replay)", func(e *crlEnv) string {
			return string(pkitest.CRLPEM(e.root.CRL(t, e.now(), pkitest.CRLSpec{Number: 3})))
		}, pki.CheckCRLNumber},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCRLEnv(t, Options{}, nil)
			e.issueInter()
			good := e.root.CRL(t, e.now(), pkitest.CRLSpec{Number: 5})
			e.setExchange(map[string]string{crlexchange.KeyVaultCRLs: string(pkitest.CRLPEM(good)), crlexchange.KeyStatus: status(t, e.td, nil, nil)})
			e.mustReconcile()
			before := e.secret("ns", "cacerts")
			e.rec.take()

			e.setExchange(map[string]string{crlexchange.KeyVaultCRLs: tt.input(e)})
			e.clock.Step(time.Minute)
			e.mustReconcile()
			after := e.secret("ns", "cacerts")
			if !bytes.Equal(before.Data[pki.CRLKey], after.Data[pki.CRLKey]) {
				t.Fatal("ca-crl.pem changed")
			}
			if !hasEvent(e.rec.take(), "Warning InvalidCRL", e.exchangeKey().Name, crlexchange.KeyVaultCRLs) {
				t.Error("no Warning event naming the ConfigMap and key")
			}
			if c := crlCondition(e.env); c == nil || !strings.HasPrefix(*c, "False InvalidCRL") {
				t.Errorf("CRLSynced = %v", c)
			}
			if got := gauge(t, e.r.Metrics.CRLValidationFailures.WithLabelValues(string(tt.check))); got != 1 {
				t.Errorf("meshtrust_crl_validation_failures_total{check=%q} = %v, want 1", tt.check, got)
			}
		})
	}
}

func TestTLSLayoutSaysItCannotCarryACRL(t *testing.T) {
	e := newCRLEnv(t, Options{}, map[string]string{AnnotationLayout: "tls"})
	e.issueInter()
	e.setExchange(map[string]string{crlexchange.KeyVaultCRLs: string(pkitest.CRLPEM(e.root.CRL(t, e.now(), pkitest.CRLSpec{}))), crlexchange.KeyStatus: status(t, e.td, nil, nil)})
	e.mustReconcile()
	if _, ok := e.secret("ns", "cacerts").Data[pki.CRLKey]; ok {
		t.Fatal("the tls layout got a ca-crl.pem")
	}
	if !hasEvent(e.rec.take(), "Warning "+decision.ReasonCRLNotCarried, "tls layout cannot carry a CRL") {
		t.Error("no Warning event")
	}
	if c := crlCondition(e.env); c == nil || !strings.HasPrefix(*c, "False "+decision.ReasonCRLNotCarried) {
		t.Errorf("CRLSynced = %v", c)
	}
}

// A namespaced VaultIssuer's Certificate gets no CRLs, and says so; the
// same Certificate from a VaultClusterIssuer that has published nothing yet
// stays quiet, so the warning names the issuer kind, not a missing exchange.
func TestNamespacedIssuerSaysItGetsNoCRL(t *testing.T) {
	for _, tt := range []struct {
		kind     string
		wantWarn bool
	}{
		{crlexchange.KindIssuer, true},
		{crlexchange.KindClusterIssuer, false},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			e := newCRLEnv(t, Options{}, nil)
			crt := &cmapi.Certificate{}
			if err := e.client.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "ca"}, crt); err != nil {
				t.Fatal(err)
			}
			crt.Spec.IssuerRef = cmmeta.IssuerReference{Group: crlexchange.Group, Kind: tt.kind, Name: crlIssuer}
			if err := e.client.Update(context.Background(), crt); err != nil {
				t.Fatal(err)
			}
			e.issueInter()
			e.mustReconcile()
			s := e.secret("ns", "cacerts")
			if s == nil {
				t.Fatal("no cacerts: the warning must not stop the sync")
			}
			if _, ok := s.Data[pki.CRLKey]; ok {
				t.Fatal("got a ca-crl.pem without an exchange")
			}
			warned := hasEvent(e.rec.take(), "Warning "+decision.ReasonCRLNotCarriedIssuer, "namespaced VaultIssuer takes part in no CRL exchange")
			c := crlCondition(e.env)
			conditioned := c != nil && strings.HasPrefix(*c, "False "+decision.ReasonCRLNotCarriedIssuer)
			if warned != tt.wantWarn || conditioned != tt.wantWarn {
				t.Errorf("Warning event %v, CRLSynced=False %v (%v); want both %v", warned, conditioned, c, tt.wantWarn)
			}
		})
	}
}

// Other clusters' intermediates' CRLs are carried, so that Envoy accepts
// their workloads; one under a root this cluster does not trust is not.
func TestPeerCRLsCarried(t *testing.T) {
	e := newCRLEnv(t, Options{}, nil)
	e.issueInter()
	peer := pkitest.New(t, e.now(), pkitest.Spec{CN: "kind3 istio intermediate CA", PermittedURIDomains: []string{"kind3"}}, e.root)
	otherRoot := pkitest.New(t, e.now(), pkitest.Spec{CN: "other root"}, nil)
	stranger := pkitest.New(t, e.now(), pkitest.Spec{CN: "kind4 istio intermediate CA", PermittedURIDomains: []string{"kind4"}}, otherRoot)
	peers := string(peer.PEM()) + string(stranger.PEM()) + string(pkitest.CRLPEM(peer.CRL(t, e.now(), pkitest.CRLSpec{}), stranger.CRL(t, e.now(), pkitest.CRLSpec{})))
	e.setExchange(map[string]string{
		crlexchange.KeyVaultCRLs: string(pkitest.CRLPEM(e.root.CRL(t, e.now(), pkitest.CRLSpec{}))),
		crlexchange.KeyPeers:     peers,
		crlexchange.KeyStatus:    status(t, e.td, []crlexchange.Peer{{TrustDomain: "kind3", Intermediates: 1}}, nil),
	})
	e.mustReconcile()
	crls := e.crlsInCACerts()
	if !issuedBy(crls, peer.Cert) || issuedBy(crls, stranger.Cert) || len(crls) != 3 {
		t.Fatalf("ca-crl.pem holds %d CRLs, peer's %v, stranger's %v; want root, own and the peer's", len(crls), issuedBy(crls, peer.Cert), issuedBy(crls, stranger.Cert))
	}
}

// Until every enrolled cluster has published a CRL, no cluster starts
// carrying CRLs: it would refuse the workloads of those that have not.
func TestNoCRLUntilPeersPublish(t *testing.T) {
	e := newCRLEnv(t, Options{}, nil)
	e.issueInter()
	e.setExchange(map[string]string{
		crlexchange.KeyVaultCRLs: string(pkitest.CRLPEM(e.root.CRL(t, e.now(), pkitest.CRLSpec{}))),
		crlexchange.KeyStatus:    status(t, e.td, []crlexchange.Peer{{TrustDomain: "kind3"}}, nil),
	})
	e.mustReconcile()
	if _, ok := e.secret("ns", "cacerts").Data[pki.CRLKey]; ok {
		t.Fatal("ca-crl.pem written while kind3 has published nothing")
	}
	if !hasEvent(e.rec.take(), "Warning "+decision.ReasonCRLWaitingOnPeers, "kind3") {
		t.Error("no Warning event naming kind3")
	}
	// The cluster's own CRL is published meanwhile, or no one could ever start.
	if e.exchange().Data[crlexchange.OwnKey("ns", "ca")] == "" {
		t.Error("own CRL not published")
	}
}

// Without a CRL of the root, istiod would refuse the file: none is written.
func TestNoCRLWithoutTheRoots(t *testing.T) {
	e := newCRLEnv(t, Options{}, nil)
	e.issueInter()
	e.setExchange(map[string]string{crlexchange.KeyStatus: status(t, e.td, nil, nil)})
	e.mustReconcile()
	if _, ok := e.secret("ns", "cacerts").Data[pki.CRLKey]; ok {
		t.Fatal("ca-crl.pem written without the root's CRL")
	}
	if c := crlCondition(e.env); c == nil || !strings.HasPrefix(*c, "False "+decision.ReasonCRLIncomplete) || !strings.Contains(*c, "CN=root") {
		t.Errorf("CRLSynced = %v", c)
	}
}

// A renewed intermediate with peers waits until its CRL has been in Vault
// for the propagation delay; meanwhile ca-crl.pem already carries it, so
// istiod takes the intermediate when it comes (istio/istio#61075).
func TestNewIntermediateWaitsForItsCRLToPropagate(t *testing.T) {
	e := newCRLEnv(t, Options{CRLPropagationDelay: 5 * time.Minute}, nil)
	old := e.issueInter()
	rootCRL := string(pkitest.CRLPEM(e.root.CRL(t, e.now(), pkitest.CRLSpec{})))
	peers := []crlexchange.Peer{{TrustDomain: "kind3", Intermediates: 1}}
	e.setExchange(map[string]string{crlexchange.KeyVaultCRLs: rootCRL,
		crlexchange.KeyStatus: status(t, e.td, peers, map[string]time.Time{pki.Fingerprint(old.Cert): e.now().Add(-time.Hour)})})
	e.mustReconcile()
	if got := e.secret("ns", "cacerts").Annotations[AnnotationSerial]; got != old.Cert.SerialNumber.Text(16) {
		t.Fatalf("first intermediate (published an hour ago) not installed: %s", got)
	}

	e.clock.Step(time.Hour)
	renewed := e.issueInter()
	res := e.mustReconcile()
	s := e.secret("ns", "cacerts")
	if got := s.Annotations[AnnotationSerial]; got != old.Cert.SerialNumber.Text(16) {
		t.Fatalf("the renewed intermediate was installed before its CRL was published: %s", got)
	}
	crls, _ := pki.DecodeCRLs(s.Data[pki.CRLKey], pki.MaxCRLBundlePEMSize)
	if !issuedBy(crls, renewed.Cert) || !issuedBy(crls, old.Cert) {
		t.Fatal("while it waits, ca-crl.pem must carry both intermediates' CRLs")
	}
	if c := decision.Condition(e.getCert(), ConditionCACertsSynced); c == nil || c.Reason != decision.ReasonWaitingForCRL {
		t.Errorf("CACertsSynced = %+v", c)
	}

	published := e.now()
	e.setExchange(map[string]string{crlexchange.KeyStatus: status(t, e.td, peers, map[string]time.Time{
		pki.Fingerprint(old.Cert): published.Add(-2 * time.Hour), pki.Fingerprint(renewed.Cert): published})})
	res = e.mustReconcile()
	if res.RequeueAfter <= 0 || res.RequeueAfter > 5*time.Minute {
		t.Errorf("requeue after %s, want at most the delay", res.RequeueAfter)
	}
	if got := e.secret("ns", "cacerts").Annotations[AnnotationSerial]; got != old.Cert.SerialNumber.Text(16) {
		t.Fatal("installed before the propagation delay passed")
	}
	e.clock.Step(5 * time.Minute)
	e.mustReconcile()
	s = e.secret("ns", "cacerts")
	if got := s.Annotations[AnnotationSerial]; got != renewed.Cert.SerialNumber.Text(16) {
		t.Fatalf("not installed after the delay: %s", got)
	}
	crls, _ = pki.DecodeCRLs(s.Data[pki.CRLKey], pki.MaxCRLBundlePEMSize)
	b, err := pki.ParseIstio(s.Data)
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := b.FullChain()
	if missing := pki.MissingCRLs(chain, crls); len(missing) != 0 || !issuedBy(crls, old.Cert) {
		t.Fatalf("after the renewal ca-crl.pem lacks %v, or the old intermediate's CRL (its workloads are still around)", missing)
	}
}

// A cluster whose own intermediate is on the root's CRL says so.
func TestRevokedOwnIntermediateWarns(t *testing.T) {
	e := newCRLEnv(t, Options{}, nil)
	inter := e.issueInter()
	e.setExchange(map[string]string{crlexchange.KeyVaultCRLs: string(pkitest.CRLPEM(e.root.CRL(t, e.now(), pkitest.CRLSpec{Revoked: []*x509.Certificate{inter.Cert}}))),
		crlexchange.KeyStatus: status(t, e.td, nil, nil)})
	e.mustReconcile()
	if !hasEvent(e.rec.take(), "Warning "+decision.ReasonIntermediateRevoked, fmt.Sprintf("%x", inter.Cert.SerialNumber)) {
		t.Error("no IntermediateRevoked warning")
	}
}
