package status

import (
	"crypto/x509"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// The test PKI is built at run time from fixed Ed25519 seeds, fixed serials
// and fixed times (see pkitest.Spec), so the certificates and their
// fingerprints in the golden files are the same on every run.

// epoch is the fixed "now" of the golden tests.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newRoot is a root CA made from seed.
func newRoot(t testing.TB, seed byte, cn string) *pkitest.Cert {
	t.Helper()
	return pkitest.New(t, epoch, pkitest.Spec{
		CN:           cn,
		Organization: []string{"meshtrust test"},
		NotBefore:    epoch.Add(-24 * time.Hour),
		NotAfter:     epoch.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		Key:          pkitest.SeededEd25519Key(seed),
		Serial:       int64(seed),
	}, nil)
}

// intermediateOpts describe an intermediate signed by a root.
type intermediateOpts struct {
	seed     byte
	cn       string
	td       string // URI name constraint; empty for none
	lifetime time.Duration
	age      time.Duration // how long before epoch it was issued
}

// sign makes an Istio intermediate under root.
func sign(t testing.TB, root *pkitest.Cert, o intermediateOpts) *pkitest.Cert {
	t.Helper()
	s := pkitest.Spec{
		CN:             o.cn,
		NotBefore:      epoch.Add(-o.age),
		NotAfter:       epoch.Add(-o.age + o.lifetime),
		MaxPathLenZero: true,
		Key:            pkitest.SeededEd25519Key(o.seed),
		Serial:         1000 + int64(o.seed),
	}
	if o.td != "" {
		s.PermittedURIDomains = []string{o.td}
	}
	return pkitest.New(t, epoch, s, root)
}

// istioSecret is cacerts in Istio's layout, as the syncer writes it.
func istioSecret(t testing.TB, inter *pkitest.Cert, roots ...*pkitest.Cert) *corev1.Secret {
	t.Helper()
	var rootCerts []*x509.Certificate
	for _, r := range roots {
		rootCerts = append(rootCerts, r.Cert)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "cacerts",
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "meshtrust"},
			Annotations: map[string]string{"meshtrust.io/source-certificate": "istio-system/istio-ca"}},
		Data: map[string][]byte{
			pki.CACertKey:    pki.EncodeCertificates(inter.Cert),
			pki.CAKeyKey:     inter.KeyPEM(t),
			pki.CertChainKey: pki.EncodeCertificates(inter.Cert, rootCerts[0]),
			pki.RootCertKey:  pki.EncodeCertificates(rootCerts...),
		},
	}
}

// tlsSecret is cacerts in the kubernetes.io/tls layout, not managed.
func tlsSecret(t testing.TB, inter, root *pkitest.Cert) *corev1.Secret {
	t.Helper()
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "cacerts"},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			pki.TLSCertKey:      pki.EncodeCertificates(inter.Cert, root.Cert),
			pki.TLSKeyKey:       inter.KeyPEM(t),
			pki.CACertBundleKey: pki.EncodeCertificates(root.Cert),
		},
	}
}

func readyCertificate(ready cmmeta.ConditionStatus, reason string) cmapi.Certificate {
	return cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ca",
			Annotations: map[string]string{"meshtrust.io/istio-cacerts": "true"}},
		Spec: cmapi.CertificateSpec{IsCA: true, RenewBefore: &metav1.Duration{Duration: 240 * time.Hour}},
		Status: cmapi.CertificateStatus{Conditions: []cmapi.CertificateCondition{
			{Type: cmapi.CertificateConditionReady, Status: ready, Reason: reason},
		}},
	}
}
