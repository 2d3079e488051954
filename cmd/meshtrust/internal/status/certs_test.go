package status

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// The test PKI is built at run time from fixed Ed25519 seeds, fixed serials
// and fixed times. Ed25519 signatures are deterministic, so the certificates
// (and their fingerprints in the golden files) are the same on every run.

// epoch is the fixed "now" of the golden tests.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type ca struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
}

func seededKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func newRoot(t testing.TB, seed byte, cn string) ca {
	t.Helper()
	key := seededKey(seed)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(int64(seed)),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"meshtrust test"}},
		NotBefore:             epoch.Add(-24 * time.Hour),
		NotAfter:              epoch.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca{cert: c, key: key}
}

// intermediateOpts describe an intermediate signed by a root.
type intermediateOpts struct {
	seed     byte
	cn       string
	td       string // URI name constraint; empty for none
	lifetime time.Duration
	age      time.Duration // how long before epoch it was issued
}

func (r ca) sign(t testing.TB, o intermediateOpts) ca {
	t.Helper()
	key := seededKey(o.seed)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1000 + int64(o.seed)),
		Subject:               pkix.Name{CommonName: o.cn},
		NotBefore:             epoch.Add(-o.age),
		NotAfter:              epoch.Add(-o.age + o.lifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	if o.td != "" {
		tmpl.PermittedURIDomains = []string{o.td}
	}
	der, err := x509.CreateCertificate(nil, tmpl, r.cert, key.Public(), r.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca{cert: c, key: key}
}

func keyPEM(t testing.TB, k ed25519.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// istioSecret is cacerts in Istio's layout, as the syncer writes it.
func istioSecret(t testing.TB, inter ca, roots ...ca) *corev1.Secret {
	t.Helper()
	var rootCerts []*x509.Certificate
	for _, r := range roots {
		rootCerts = append(rootCerts, r.cert)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "cacerts",
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "meshtrust"},
			Annotations: map[string]string{"meshtrust.io/source-certificate": "istio-system/istio-ca"}},
		Data: map[string][]byte{
			pki.CACertKey:    pki.EncodeCertificates(inter.cert),
			pki.CAKeyKey:     keyPEM(t, inter.key),
			pki.CertChainKey: pki.EncodeCertificates(inter.cert, rootCerts[0]),
			pki.RootCertKey:  pki.EncodeCertificates(rootCerts...),
		},
	}
}

// tlsSecret is cacerts in the kubernetes.io/tls layout, not managed.
func tlsSecret(t testing.TB, inter ca, root ca) *corev1.Secret {
	t.Helper()
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "cacerts"},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			pki.TLSCertKey:      pki.EncodeCertificates(inter.cert, root.cert),
			pki.TLSKeyKey:       keyPEM(t, inter.key),
			pki.CACertBundleKey: pki.EncodeCertificates(root.cert),
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
