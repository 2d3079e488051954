package deploy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer"
)

func getCertificate(ctx context.Context, t *testing.T, c *lab.Cluster, ns, name string) *cmapi.Certificate {
	t.Helper()
	crt, err := fetchCertificate(ctx, c, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return crt
}

// fetchCertificate is getCertificate for polls, which must get the error
// back rather than end the test on one failed read.
func fetchCertificate(ctx context.Context, c *lab.Cluster, ns, name string) (*cmapi.Certificate, error) {
	return mesh.Certificate(ctx, c, ns, name)
}

func getSecret(ctx context.Context, t *testing.T, c *lab.Cluster, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitRevision waits until the Certificate is Ready at revision rev or
// later.
func waitRevision(t *testing.T, c *lab.Cluster, run *running, ns, name string, rev int) {
	t.Helper()
	run.eventually(t, 90*time.Second, fmt.Sprintf("Certificate %s/%s Ready at revision %d", ns, name, rev), func(ctx context.Context) error {
		crt, err := fetchCertificate(ctx, c, ns, name)
		if err != nil {
			return err
		}
		return mesh.ReadyAt(crt, rev)
	})
}

// waitCACertsFromSource waits until cacerts in ns holds the source
// Secret's current intermediate, and returns it.
func waitCACertsFromSource(t *testing.T, c *lab.Cluster, run *running, ns, source string) *corev1.Secret {
	t.Helper()
	var cacerts *corev1.Secret
	run.eventually(t, 90*time.Second, "cacerts in "+ns+" to carry "+source+"'s intermediate", func(ctx context.Context) error {
		src := &corev1.Secret{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: source}, src); err != nil {
			return err
		}
		cacerts = &corev1.Secret{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cacerts"}, cacerts); err != nil {
			return err
		}
		chain, err := pki.DecodeCertificates(src.Data[pki.TLSCertKey], pki.MaxChainPEMSize)
		if err != nil || len(chain) == 0 {
			return fmt.Errorf("source chain: %v", err)
		}
		if !bytes.Equal(cacerts.Data[pki.CACertKey], pki.EncodeCertificates(chain[0])) {
			return errors.New("ca-cert.pem is not the source's current intermediate")
		}
		return nil
	})
	return cacerts
}

// waitRestarted waits for the syncer's rollout restart of a Deployment.
func waitRestarted(t *testing.T, c *lab.Cluster, run *running, ns, name string) {
	t.Helper()
	run.eventually(t, time.Minute, "Deployment "+ns+"/"+name+" restarted", func(ctx context.Context) error {
		d := &appsv1.Deployment{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return err
		}
		if d.Spec.Template.Annotations[syncer.RestartedAtAnnotation] == "" || d.Spec.Template.Annotations[syncer.ChecksumPodAnnotation] == "" {
			return fmt.Errorf("pod template annotations %v", d.Spec.Template.Annotations)
		}
		return nil
	})
}

// poke changes an annotation so the syncer reconciles the Certificate now.
func poke(ctx context.Context, t *testing.T, c *lab.Cluster, ns, name string) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, "poke", func(ctx context.Context) error {
		crt, err := fetchCertificate(ctx, c, ns, name)
		if err != nil {
			return err
		}
		crt.Annotations["e2e.meshtrust.io/poke"] = time.Now().Format(time.RFC3339Nano)
		return c.Client.Update(ctx, crt)
	})
}

// renew asks cert-manager to re-issue, as `cmctl renew` does.
func renew(ctx context.Context, t *testing.T, c *lab.Cluster, ns, name string) {
	t.Helper()
	if err := mesh.Renew(ctx, c, ns, name, 30*time.Second, "the deploy e2e test"); err != nil {
		t.Fatal(err)
	}
}

// caChainIssuer is caChain's CA Issuer, as --syncer-allowed-issuers names it.
const caChainIssuer = "Issuer.cert-manager.io/root"

// caChain creates, in ns, a SelfSigned root, a CA Issuer on it and an
// opted-in intermediate Certificate "istio-ca" (Secret "istio-ca-tls"):
// the syncer flow with cert-manager's built-in issuers. A syncer installs it
// only when --syncer-allowed-issuers names caChainIssuer.
func caChain(ctx context.Context, t *testing.T, c *lab.Cluster, ns string) {
	t.Helper()
	ref := func(name string) cmmeta.IssuerReference { return cmmeta.IssuerReference{Kind: "Issuer", Name: name} }
	ecdsaKey := &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm}
	for _, obj := range []client.Object{
		&cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "selfsigned"},
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}}},
		&cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "root"},
			Spec: cmapi.CertificateSpec{IsCA: true, CommonName: "deploy e2e root", SecretName: "root-ca",
				Duration: &metav1.Duration{Duration: 8760 * time.Hour}, IssuerRef: ref("selfsigned"), PrivateKey: ecdsaKey}},
		&cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "root"},
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "root-ca"}}}},
		&cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istio-ca", Annotations: map[string]string{syncer.AnnotationOptIn: "true"}},
			Spec: cmapi.CertificateSpec{IsCA: true, CommonName: "istio intermediate " + ns, SecretName: "istio-ca-tls",
				Duration: &metav1.Duration{Duration: 2160 * time.Hour}, RenewBefore: &metav1.Duration{Duration: 720 * time.Hour},
				IssuerRef: ref("root"), PrivateKey: ecdsaKey,
				// The syncer installs only name-constrained intermediates.
				NameConstraints: &cmapi.NameConstraints{Critical: true, Permitted: &cmapi.NameConstraintItem{URIDomains: []string{ns + ".mesh"}}}}},
	} {
		if err := c.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// newCSR returns a PEM CSR for a fresh P-256 key with one URI SAN.
func newCSR(t *testing.T, uri string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
