package issuer_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	vaultapi "github.com/hashicorp/vault/api"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

func kubernetesAuth(role string, audiences ...string) v1alpha1.VaultAuth {
	return v1alpha1.VaultAuth{Kubernetes: &v1alpha1.KubernetesAuth{
		MountPath: "kubernetes", Role: role,
		ServiceAccountRef: v1alpha1.ServiceAccountRef{Name: issuerSA, Audiences: audiences},
	}}
}

func (e *env) spec(auth v1alpha1.VaultAuth, td string) v1alpha1.VaultIssuerSpec {
	s := v1alpha1.VaultIssuerSpec{
		Server: e.lab.Vault.Addr,
		PKI:    v1alpha1.PKISpec{Mount: "pki", Role: leafRole},
		Auth:   auth,
	}
	if td != "" {
		s.Intermediate = &v1alpha1.IntermediateSpec{TrustDomain: td}
	}
	return s
}

// TestClusterIssuerIntermediate is the product's main path: a
// VaultClusterIssuer with Kubernetes auth mints a name-constrained
// intermediate for a cert-manager Certificate, and ca.crt is Vault's root.
func TestClusterIssuerIntermediate(t *testing.T) {
	e := getEnv(t)
	ctx := context.Background()
	loginsBefore := e.counter(t, "meshtrust_vault_logins_total", nil)

	ci := &v1alpha1.VaultClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "east"}, Spec: e.spec(kubernetesAuth("east"), trustDomain)}
	createOrFail(t, e.client, ci)
	e.waitIssuer(t, ci, metav1.ConditionTrue, "")

	cert := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "east-intermediate"},
		Spec: cmapi.CertificateSpec{
			SecretName: "east-intermediate", IsCA: true, CommonName: "east.mesh intermediate CA",
			URIs:       []string{"spiffe://" + trustDomain},
			Duration:   &metav1.Duration{Duration: 48 * time.Hour},
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  clusterIssuerRef("east"),
		},
	}
	// Cleanups run last-registered first: the Certificate goes, then its
	// requests.
	t.Cleanup(func() { e.deleteOwnedRequests(t, cert) })
	createOrFail(t, e.client, cert)
	eventually(t, 90*time.Second, "Certificate east-intermediate Ready", func() (bool, string) {
		if err := e.client.Get(ctx, client.ObjectKeyFromObject(cert), cert); err != nil {
			return false, err.Error()
		}
		for _, c := range cert.Status.Conditions {
			if c.Type == cmapi.CertificateConditionReady {
				return c.Status == cmmeta.ConditionTrue, c.Reason + ": " + c.Message
			}
		}
		return false, "no Ready condition"
	})
	var sec corev1.Secret
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "east-intermediate"}, &sec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.client.Delete(ctx, &sec) })

	chain := parseCerts(t, sec.Data["tls.crt"])
	ica := chain[0]
	if !ica.IsCA || !ica.MaxPathLenZero || ica.MaxPathLen != 0 {
		t.Errorf("intermediate: IsCA=%v MaxPathLen=%d MaxPathLenZero=%v; want a CA with path length 0", ica.IsCA, ica.MaxPathLen, ica.MaxPathLenZero)
	}
	if len(ica.PermittedURIDomains) != 1 || ica.PermittedURIDomains[0] != trustDomain {
		t.Errorf("PermittedURIDomains = %q, want [%s]", ica.PermittedURIDomains, trustDomain)
	}
	vaultRoot := parseCerts(t, []byte(e.rootPEM))
	caCrt := parseCerts(t, sec.Data["ca.crt"])
	if len(caCrt) != 1 || string(caCrt[0].Raw) != string(vaultRoot[0].Raw) {
		t.Fatalf("ca.crt holds %d certificates; want exactly Vault's root", len(caCrt))
	}

	key, err := parsePrivateKey(sec.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCrt[0])
	inters := x509.NewCertPool()
	for _, c := range chain {
		inters.AddCert(c)
	}
	for _, tc := range []struct {
		uri    string
		wantOK bool
	}{
		{uri: "spiffe://east.mesh/ns/a/sa/b", wantOK: true},
		{uri: "spiffe://west.mesh/ns/a/sa/b", wantOK: false},
	} {
		leaf := signLeaf(t, ica, key, tc.uri)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if (err == nil) != tc.wantOK {
			t.Errorf("leaf %s: verify error %v, want ok=%v", tc.uri, err, tc.wantOK)
		}
	}

	// One login serves many requests: 50 leaves from the same issuer.
	for i := range 50 {
		cr := newCR("team-a", fmt.Sprintf("leaf-%d", i), clusterIssuerRef("east"), pkitest.URICSR(t, pkitest.ECKey(t), "", fmt.Sprintf("spiffe://east.mesh/ns/a/sa/s%d", i)), false, 30*time.Minute)
		createOrFail(t, e.client, cr)
	}
	for i := range 50 {
		cr := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: fmt.Sprintf("leaf-%d", i)}}
		e.waitCR(t, cr, cmapi.CertificateRequestReasonIssued, "", 90*time.Second)
		if got := parseCerts(t, cr.Status.CA); len(got) != 1 || !got[0].Equal(vaultRoot[0]) {
			t.Fatalf("leaf-%d: status.ca is not Vault's root", i)
		}
	}
	if logins := e.counter(t, "meshtrust_vault_logins_total", nil) - loginsBefore; logins > 2 {
		t.Errorf("51 certificates took %v Vault logins, want at most 2", logins)
	}
	if n := e.counter(t, "meshtrust_issuer_certificates_signed_total", map[string]string{"kind": "intermediate"}); n < 1 {
		t.Errorf("signed{kind=intermediate} = %v", n)
	}
}

func parsePrivateKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("tls.key is not PEM")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("tls.key holds a %T, not a signing key", k)
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

// signLeaf signs a workload certificate for uri with the intermediate's key.
func signLeaf(t *testing.T, ca *x509.Certificate, caKey crypto.Signer, uri string) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	leafKey := pkitest.ECKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	return pkitest.Create(t, tmpl, ca, leafKey.Public(), caKey)
}

// TestAuthMethods signs a leaf end to end through a namespaced VaultIssuer
// for each auth method.
func TestAuthMethods(t *testing.T) {
	e := getEnv(t)
	ctx := context.Background()
	sid, err := e.vault.Logical().WriteWithContext(ctx, "auth/approle/role/issuer/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.vault.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{issuerPolicy}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	createOrFail(t, e.client, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "vault-creds"},
		StringData: map[string]string{"secretId": sid.Data["secret_id"].(string), "token": tok.Auth.ClientToken + "\n"},
	})
	for _, tc := range []struct {
		name string
		auth v1alpha1.VaultAuth
	}{
		{name: "kubernetes", auth: kubernetesAuth("team-a", "meshtrust")},
		{name: "approle", auth: v1alpha1.VaultAuth{AppRole: &v1alpha1.AppRoleAuth{RoleID: e.roleID, SecretRef: v1alpha1.SecretKeySelector{Name: "vault-creds", Key: "secretId"}}}},
		{name: "token", auth: v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-creds", Key: "token"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vi := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "auth-" + tc.name}, Spec: e.spec(tc.auth, trustDomain)}
			createOrFail(t, e.client, vi)
			e.waitIssuer(t, vi, metav1.ConditionTrue, "")
			key := pkitest.ECKey(t)
			cr := newCR("team-a", "auth-"+tc.name, issuerRef(vi.Name), pkitest.URICSR(t, key, "", "spiffe://east.mesh/ns/team-a/sa/"+tc.name), false, 30*time.Minute)
			createOrFail(t, e.client, cr)
			e.waitCR(t, cr, cmapi.CertificateRequestReasonIssued, "", 60*time.Second)
			leaf := parseCerts(t, cr.Status.Certificate)[0]
			if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Fatal("issued certificate does not carry the CSR's key")
			}
		})
	}
}

// TestKubernetesCSR signs a Kubernetes CertificateSigningRequest addressed
// to a VaultClusterIssuer by signerName.
func TestKubernetesCSR(t *testing.T) {
	e := getEnv(t)
	ctx := context.Background()
	ci := &v1alpha1.VaultClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "east"}}
	if err := e.client.Get(ctx, client.ObjectKeyFromObject(ci), ci); err != nil {
		ci = &v1alpha1.VaultClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "east"}, Spec: e.spec(kubernetesAuth("east"), trustDomain)}
		createOrFail(t, e.client, ci)
	}
	e.waitIssuer(t, ci, metav1.ConditionTrue, "")
	key := pkitest.ECKey(t)
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-csr", Annotations: map[string]string{"experimental.cert-manager.io/request-duration": "30m"}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pkitest.URICSR(t, key, "", "spiffe://east.mesh/ns/kube/sa/csr"),
			SignerName: vaultcontract.SignerNamePrefix + "east",
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
	createOrFail(t, e.client, csr)
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "E2E", Message: "approved by the e2e test",
	})
	if _, err := e.cluster.Clientset.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "Kubernetes CSR signed", func() (bool, string) {
		if err := e.client.Get(ctx, client.ObjectKeyFromObject(csr), csr); err != nil {
			return false, err.Error()
		}
		return len(csr.Status.Certificate) > 0, fmt.Sprintf("%+v", csr.Status.Conditions)
	})
	leaf := parseCerts(t, csr.Status.Certificate)[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://east.mesh/ns/kube/sa/csr" {
		t.Errorf("leaf URIs = %v", leaf.URIs)
	}
	roots := x509.NewCertPool()
	roots.AddCert(parseCerts(t, []byte(e.rootPEM))[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("leaf does not verify to Vault's root: %v", err)
	}
}

// TestLifetimeTruncation asks for more than the role's max_ttl: the
// certificate is issued once, and the request says by how much it fell short.
func TestLifetimeTruncation(t *testing.T) {
	e := getEnv(t)
	ctx := context.Background()
	vi := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "truncation"}, Spec: e.spec(kubernetesAuth("team-a", "meshtrust"), trustDomain)}
	createOrFail(t, e.client, vi)
	e.waitIssuer(t, vi, metav1.ConditionTrue, "")
	signedBefore := e.counter(t, "meshtrust_issuer_certificates_signed_total", map[string]string{"kind": "leaf"})
	cr := newCR("team-a", "truncated", issuerRef(vi.Name), pkitest.URICSR(t, pkitest.ECKey(t), "", "spiffe://east.mesh/ns/a/sa/t"), false, 3*time.Hour)
	createOrFail(t, e.client, cr)
	issued := e.waitCR(t, cr, cmapi.CertificateRequestReasonIssued, "", 60*time.Second)
	// The role caps leaves at 1h and Vault backdates notBefore by 30s; it
	// reads the clock once for each end, so a second boundary between the
	// two reads can take a second off or add one. The message must name
	// the lifetime the certificate really has.
	leaf := parseCerts(t, issued.Status.Certificate)[0]
	granted := leaf.NotAfter.Sub(leaf.NotBefore)
	if granted < time.Hour+29*time.Second || granted > time.Hour+31*time.Second {
		t.Fatalf("issued for %s, want the role's 1h cap plus Vault's 30s backdating", granted)
	}
	eventually(t, 30*time.Second, "LifetimeTruncated condition", func() (bool, string) {
		if err := e.client.Get(ctx, client.ObjectKeyFromObject(cr), cr); err != nil {
			return false, err.Error()
		}
		for _, c := range cr.Status.Conditions {
			if string(c.Type) == issuer.ConditionLifetimeTruncated {
				return strings.Contains(c.Message, granted.String()) && strings.Contains(c.Message, "3h0m0s"), c.Message
			}
		}
		return false, "no condition"
	})
	eventually(t, 30*time.Second, "LifetimeTruncated event", func() (bool, string) {
		return e.hasEvent(t, cr, issuer.ConditionLifetimeTruncated), "no event"
	})
	if n := e.counter(t, "meshtrust_issuer_certificates_signed_total", map[string]string{"kind": "leaf"}) - signedBefore; n != 1 {
		t.Errorf("signed %v certificates for one truncated request, want exactly 1 (no re-issue loop)", n)
	}
	if n := e.eventCount(t, cr, issuer.ConditionLifetimeTruncated); n != 1 {
		t.Errorf("%d %s events, want exactly 1", n, issuer.ConditionLifetimeTruncated)
	}
}
